// A second, independent view of a repository: the official JavaScript
// client @huggingface/hub reading what hubfs wrote, or committing to the
// same branch as another writer would.
//
// Usage:
//   HF_TOKEN=hf_... node repo.mjs show <hubUrl> <model repo> <revision>
//       One JSON line: {"commits": [{"id", "title"}, ...] (newest first),
//       "files": {path: {"size", "sha256", "lfs"}}}; every file is
//       downloaded (downloadFile) and hashed here.
//   HF_TOKEN=hf_... node repo.mjs commit <hubUrl> <model repo> <branch> \
//       <title> <path>=<local file> | -<path> ...
//       One commit (commit()): adds or updates each path with the local
//       file's bytes, deletes each -path.  Prints the commit id.

import * as hub from "@huggingface/hub";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const [cmd, hubUrlArg, name, rev, ...rest] = process.argv.slice(2);
const accessToken = process.env.HF_TOKEN;
if (!["show", "commit"].includes(cmd) || !hubUrlArg || !name || !rev ||
    !accessToken) {
  console.error("usage: HF_TOKEN=hf_... node repo.mjs show|commit <hubUrl> <repo> <revision> ...");
  process.exit(2);
}
const hubUrl = hubUrlArg.replace(/\/+$/, "");
const r = { hubUrl, accessToken, repo: { type: "model", name } };

async function show() {
  const commits = [];
  for await (const c of hub.listCommits({ ...r, revision: rev, batchSize: 100 })) {
    commits.push({ id: c.oid, title: c.title });
  }
  const files = {};
  for await (const e of hub.listFiles({ ...r, revision: rev, recursive: true })) {
    if (e.type !== "file") continue;
    const blob = await hub.downloadFile({ ...r, revision: rev, path: e.path, xet: false });
    if (!blob) throw new Error(`downloadFile(${e.path}): not found`);
    const bytes = Buffer.from(await blob.arrayBuffer());
    if (bytes.length !== e.size) {
      throw new Error(`${e.path}: listFiles says ${e.size} bytes, downloadFile gave ${bytes.length}`);
    }
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    if (e.lfs && e.lfs.oid !== sha256) {
      throw new Error(`${e.path}: LFS oid ${e.lfs.oid}, content hashes to ${sha256}`);
    }
    files[e.path] = { size: e.size, sha256, lfs: Boolean(e.lfs) };
  }
  return { commits, files };
}

async function commit() {
  const [title, ...specs] = rest;
  const operations = specs.map((s) => {
    if (s.startsWith("-")) return { operation: "delete", path: s.slice(1) };
    const eq = s.indexOf("=");
    return { operation: "addOrUpdate", path: s.slice(0, eq),
             content: new Blob([readFileSync(s.slice(eq + 1))]) };
  });
  const out = await hub.commit({ ...r, branch: rev, title, operations });
  return out.commit.oid;
}

try {
  const out = cmd === "show" ? await show() : await commit();
  console.log(typeof out === "string" ? out : JSON.stringify(out));
} catch (e) {
  console.error(`FAIL: ${e.statusCode ? "HTTP " + e.statusCode + ": " : ""}${e.message}`);
  process.exit(1);
}
