// Conformance scenarios: the official JavaScript client @huggingface/hub
// (pinned in package.json) driven against a Hub-compatible server.
//
// Usage:  HF_TOKEN=hf_... node conformance.mjs <scenario> <hubUrl> [repoName]
//
//   scenario  "model" (a private model repo) or "dataset" (a public dataset
//             repo, {type: "dataset", name})
//   repoName  "ns/name", fresh for each run (createRepo must not find it);
//             default $JS_REPO, else "<whoami name>/js-<scenario>-<time>"
//
// Environment:
//   HF_TOKEN         write token (must start with "hf_"), required
//   EXPECT_USER      if set, whoAmI().name must equal it
//   PAGE_SIZE        if set, the server's tree page size: listFiles must take
//                    exactly ceil(entries / PAGE_SIZE) requests
//   MULTIPART_CHUNK  if set (bytes), the server's multipart chunk size
//   JS_CACHE_DIR     cache directory for downloadFileToCacheDir /
//                    snapshotDownload (default: a fresh temp directory)
//
// The server must use a small tree page size (e.g. --page-size 3) so that
// listFiles follows Link rel="next", and must offer multipart uploads for a
// 1.3 MiB object (e.g. --multipart-threshold 1MiB --multipart-chunk 256KiB).
//
// Every step throws on a mismatch; the process exits 1 with "FAIL: ..." on
// stderr, or prints one JSON summary line on stdout and exits 0.

import * as hub from "@huggingface/hub";
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync,
         realpathSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";

// --- arguments -----------------------------------------------------------
const [scenario, hubUrlArg, repoArg] = process.argv.slice(2);
if (!["model", "dataset"].includes(scenario) || !hubUrlArg) {
  console.error("usage: HF_TOKEN=hf_... node conformance.mjs <model|dataset> <hubUrl> [repoName]");
  process.exit(2);
}
const hubUrl = hubUrlArg.replace(/\/+$/, "");
const hubOrigin = new URL(hubUrl).origin;
const accessToken = process.env.HF_TOKEN;
if (!accessToken) {
  console.error("HF_TOKEN is not set");
  process.exit(2);
}
const PAGE_SIZE = process.env.PAGE_SIZE ? Number(process.env.PAGE_SIZE) : null;
const MULTIPART_CHUNK = process.env.MULTIPART_CHUNK ? Number(process.env.MULTIPART_CHUNK) : null;
const cacheDir = process.env.JS_CACHE_DIR || mkdtempSync(join(tmpdir(), "hubjs-"));
// downloadFileToCacheDir logs "Downloading ..." with console.debug: keep
// stdout for the summary line.
console.debug = (...args) => console.error(...args);

// --- assertions ----------------------------------------------------------
class Mismatch extends Error {}
let currentStep = "(start)";
let checks = 0;
function ok(cond, what) {
  checks++;
  if (!cond) throw new Mismatch(`${currentStep}: ${what}`);
}
function eq(actual, expected, what) {
  checks++;
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Mismatch(`${currentStep}: ${what}: expected ${e}, got ${a}`);
}
function bytesEq(actual, expected, what) {
  checks++;
  const a = Buffer.from(actual), e = Buffer.from(expected);
  if (!a.equals(e)) {
    let i = 0;
    while (i < Math.min(a.length, e.length) && a[i] === e[i]) i++;
    throw new Mismatch(`${currentStep}: ${what}: ${a.length} bytes vs expected ${e.length}, first difference at ${i}`);
  }
}
async function rejects(promise, status, what) {
  checks++;
  try {
    await promise;
  } catch (e) {
    if (e instanceof Mismatch) throw e;
    if (e?.statusCode !== status) {
      throw new Mismatch(`${currentStep}: ${what}: expected HubApiError ${status}, got ${e?.name} ${e?.statusCode}: ${e?.message}`);
    }
    return e;
  }
  throw new Mismatch(`${currentStep}: ${what}: expected HubApiError ${status}, but it succeeded`);
}

// --- a fetch that records what the client sends ----------------------------
// Each entry: method, origin ("hub" or the other origin), path, whether the
// client itself set Authorization / Range, the status and whether undici
// followed a redirect (and to which origin).  Replies of LFS batch calls are
// parsed to see which transfer (basic/multipart) the server chose.
const requests = [];
const batchReplies = [];
async function loggingFetch(input, init = {}) {
  const url = new URL(typeof input === "string" || input instanceof URL ? String(input) : input.url);
  const headers = new Headers(init.headers);
  const rec = {
    step: currentStep,
    method: (init.method ?? "GET").toUpperCase(),
    origin: url.origin === hubOrigin ? "hub" : url.origin,
    path: url.pathname,
    query: url.search,
    auth: headers.has("authorization"),
    range: headers.get("range"),
  };
  requests.push(rec);
  if (rec.origin !== "hub" && rec.auth) {
    throw new Mismatch(`${currentStep}: the client sent Authorization to ${url.origin}${url.pathname}`);
  }
  const res = await fetch(input, init);
  rec.status = res.status;
  rec.redirected = res.redirected;
  rec.finalOrigin = res.url && new URL(res.url).origin !== hubOrigin ? new URL(res.url).origin : "hub";
  if (rec.method === "POST" && url.pathname.endsWith(".git/info/lfs/objects/batch") && res.ok) {
    const json = await res.clone().json();
    batchReplies.push({ step: currentStep, json });
  }
  return res;
}
const stepRequests = (step) => requests.filter((r) => r.step === step);

// --- expected repository state -------------------------------------------
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");
const gitBlobSha = (buf) => createHash("sha1").update(`blob ${buf.length}\0`).update(buf).digest("hex");
const lfsPointer = (buf) =>
  Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(buf)}\nsize ${buf.length}\n`);
const GITATTRIBUTES = Buffer.from(
  "*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n");
const isLfsPath = (p) => p.endsWith(".bin") || p.endsWith(".safetensors");

class RepoState {
  constructor(files = new Map()) { this.files = new Map(files); }
  add(path, buf) { this.files.set(path, Buffer.from(buf)); }
  del(path) { ok(this.files.delete(path), `internal: ${path} not in expected state`); }
  dirs() {
    const d = new Set();
    for (const p of this.files.keys()) {
      const parts = p.split("/");
      for (let i = 1; i < parts.length; i++) d.add(parts.slice(0, i).join("/"));
    }
    return d;
  }
  clone() { return new RepoState(this.files); }
}

// Check one tree / paths-info entry against the expected content.
function checkFileEntry(entry, buf, what) {
  eq(entry.type, "file", `${what} type`);
  if (isLfsPath(entry.path)) {
    const ptr = lfsPointer(buf);
    ok(entry.lfs, `${what} must carry lfs`);
    eq(entry.lfs.oid, sha256(buf), `${what} lfs.oid`);
    eq(entry.lfs.size, buf.length, `${what} lfs.size`);
    eq(entry.lfs.pointerSize, ptr.length, `${what} lfs.pointerSize`);
    eq(entry.size, buf.length, `${what} size`);
    eq(entry.oid, gitBlobSha(ptr), `${what} oid (git blob id of the pointer)`);
  } else {
    eq(entry.lfs, undefined, `${what} must not carry lfs`);
    eq(entry.size, buf.length, `${what} size`);
    eq(entry.oid, gitBlobSha(buf), `${what} oid (git blob id)`);
  }
}

// All regular files under dir (following symlinks), as relative paths.
function walkFiles(dir) {
  const out = [];
  const rec = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) rec(p);
      else out.push(relative(dir, p));
    }
  };
  rec(dir);
  return out.sort();
}

// --- the scenario --------------------------------------------------------
const summary = { scenario, hubUrl, ok: false };
const steps = [];
async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  await fn();
  steps.push({ name, ms: Date.now() - t0 });
}

async function run() {
  const type = scenario;
  const isPrivate = type === "model";
  const P = type === "model" ? "" : `${type}s/`;
  const info = type === "model" ? hub.modelInfo : hub.datasetInfo;
  const f = loggingFetch;
  const c = { hubUrl, accessToken, fetch: f };

  let name;
  await step("whoAmI", async () => {
    const me = await hub.whoAmI(c);
    eq(me.type, "user", "whoAmI type");
    if (process.env.EXPECT_USER) eq(me.name, process.env.EXPECT_USER, "whoAmI name");
    eq(me.auth?.accessToken?.role, "write", "token role");
    name = repoArg || process.env.JS_REPO || `${me.name}/js-${type}-${Date.now().toString(36)}`;
    const ns = name.split("/")[0];
    ok(ns === me.name || (me.orgs ?? []).some((o) => o.name === ns),
       `whoAmI: namespace ${ns} is neither the user nor one of its orgs`);
    summary.user = me.name;
  });
  const repo = { type, name };
  const r = { ...c, repo };
  const repoUrl = `${hubUrl}/${P}${name}`;
  summary.repo = `${type}s/${name}`;
  summary.private = isPrivate;

  const expected = new RepoState();
  const mainCommits = [];            // oids committed to main by this run, oldest first
  const titles = new Map();          // oid -> title

  // Commit through the client and check the returned commit.
  async function doCommit(label, fn, { branch = "main", isPullRequest = false } = {}) {
    const out = await fn();
    ok(out && out.commit, `${label}: commit output`);
    ok(/^[0-9a-f]{40}$/.test(out.commit.oid), `${label}: commit oid ${out.commit.oid}`);
    eq(out.commit.url, `${repoUrl}/commit/${out.commit.oid}`, `${label}: commit url`);
    if (!isPullRequest) {
      eq(out.pullRequestUrl, undefined, `${label}: pullRequestUrl`);
      if (branch === "main") mainCommits.push(out.commit.oid);
    }
    return out;
  }

  await step("createRepo", async () => {
    eq(await hub.repoExists({ ...c, repo }), false, "repoExists before createRepo");
    const out = await hub.createRepo({ ...r, private: isPrivate,
      files: [{ path: ".gitattributes", content: new Blob([GITATTRIBUTES]) }] });
    eq(out.repoUrl, repoUrl, "createRepo repoUrl");
    ok(typeof out.id === "string" && out.id.length > 0, "createRepo id");
    expected.add(".gitattributes", GITATTRIBUTES);
    eq(await hub.repoExists({ ...c, repo }), true, "repoExists after createRepo");
    eq(await hub.repoExists({ hubUrl, fetch: f, repo }), !isPrivate, "repoExists without a token");
    await hub.checkRepoAccess({ ...r });
    await rejects(hub.createRepo({ ...r }), 409, "createRepo of an existing repo");
  });

  let baseCount, baseSha;
  await step("countCommits(initial)", async () => {
    baseCount = await hub.countCommits({ ...r });
    ok(baseCount >= 1, `a new repo has at least one commit, got ${baseCount}`);
    baseSha = (await info({ ...c, name, additionalFields: ["sha"] })).sha;
    ok(/^[0-9a-f]{40}$/.test(baseSha), `initial sha ${baseSha}`);
    // The createRepo files must already be there.
    const pi = await hub.pathsInfo({ ...r, paths: [".gitattributes"] });
    eq(pi.length, 1, "pathsInfo(.gitattributes) after createRepo");
    checkFileEntry(pi[0], GITATTRIBUTES, ".gitattributes");
  });

  // 1. uploadFile: a regular file, then an LFS file (basic PUT).
  const hello = Buffer.from("hello world\n");
  const small = randomBytes(300_000);
  let helloCommit;
  await step("uploadFile(regular)", async () => {
    const out = await doCommit("uploadFile hello.txt", () => hub.uploadFile({ ...r,
      file: { path: "hello.txt", content: new Blob([hello]) }, commitTitle: "Add hello" }));
    helloCommit = out.commit.oid;
    titles.set(helloCommit, "Add hello");
    expected.add("hello.txt", hello);
    eq(stepRequests(currentStep).filter((x) => x.path.endsWith("/objects/batch")).length, 0,
       "a regular file must not go through the LFS batch API");
  });
  await step("uploadFile(lfs)", async () => {
    const out = await doCommit("uploadFile data/small.bin", () => hub.uploadFile({ ...r,
      file: { path: "data/small.bin", content: new Blob([small]) }, commitTitle: "Add small LFS file" }));
    titles.set(out.commit.oid, "Add small LFS file");
    expected.add("data/small.bin", small);
    const b = batchReplies.filter((x) => x.step === currentStep);
    eq(b.length, 1, "LFS batch calls");
    eq(b[0].json.transfer, "basic", "batch transfer for a 300 kB object");
    const o = b[0].json.objects;
    eq(o.length, 1, "batch objects");
    eq(o[0].oid, sha256(small), "batch object oid");
    ok(o[0].actions?.upload?.href, "batch: upload action");
    eq(o[0].actions.upload.header?.chunk_size, undefined, "batch: no chunk_size below the threshold");
    const puts = stepRequests(currentStep).filter((x) => x.method === "PUT");
    eq(puts.length, 1, "PUTs of a basic upload");
    eq(puts[0].status, 200, "basic PUT status");
    ok(puts[0].origin !== "hub", "the upload href is a presigned URL on another origin");
  });

  // 2. uploadFiles: several regular files and a 1.3 MiB LFS file (multipart).
  const big = randomBytes(Math.round(1.3 * 1024 * 1024));
  const docs = Array.from({ length: 8 }, (_, i) => Buffer.from(`doc ${i}\n`.repeat(i + 1)));
  const nested = Buffer.from("deeply nested\n");
  // A path with a space, a "+" and a non-ASCII character (the client puts
  // paths into /resolve/ URLs unencoded and lets URL() escape them).
  const SPECIAL = "spaced dir/na\u00efve file+1.txt";
  const special = Buffer.from("special name\n");
  let multipart = {}, multipartCommit;
  await step("uploadFiles(multipart)", async () => {
    const files = [
      ...docs.map((buf, i) => ({ path: `docs/${i}.txt`, content: new Blob([buf]) })),
      { path: "nested/a/b/c.txt", content: new Blob([nested]) },
      { path: SPECIAL, content: new Blob([special]) },
      { path: "data/multipart.bin", content: new Blob([big]) },
    ];
    const out = await doCommit("uploadFiles", () => hub.uploadFiles({ ...r, files,
      commitTitle: "Add docs and a multipart file" }));
    multipartCommit = out.commit.oid;
    titles.set(multipartCommit, "Add docs and a multipart file");
    docs.forEach((buf, i) => expected.add(`docs/${i}.txt`, buf));
    expected.add("nested/a/b/c.txt", nested);
    expected.add(SPECIAL, special);
    expected.add("data/multipart.bin", big);
    const b = batchReplies.filter((x) => x.step === currentStep);
    eq(b.length, 1, "LFS batch calls (one LFS file)");
    eq(b[0].json.objects.length, 1, "batch objects (only the .bin file is LFS)");
    const obj = b[0].json.objects[0];
    eq(obj.oid, sha256(big), "batch object oid");
    const header = obj.actions?.upload?.header ?? {};
    ok(header.chunk_size, "the server must offer multipart for a 1.3 MiB object " +
       "(start it with --multipart-threshold 1MiB --multipart-chunk 256KiB)");
    eq(b[0].json.transfer, "multipart", "batch transfer");
    const chunk = parseInt(header.chunk_size, 10);
    if (MULTIPART_CHUNK) eq(chunk, MULTIPART_CHUNK, "chunk_size");
    const nparts = Math.ceil(big.length / chunk);
    ok(nparts >= 2, `multipart must use several parts, got ${nparts}`);
    const partKeys = Object.keys(header).filter((k) => /^[0-9]+$/.test(k)).sort();
    eq(partKeys, Array.from({ length: nparts }, (_, i) => String(i + 1).padStart(5, "0")), "part keys");
    const reqs = stepRequests(currentStep);
    const puts = reqs.filter((x) => x.method === "PUT");
    eq(puts.length, nparts, "part PUTs");
    ok(puts.every((x) => x.status === 200 && x.origin !== "hub"), "part PUTs: 200 on the CDN origin");
    const completeUrl = new URL(obj.actions.upload.href);
    const completes = reqs.filter((x) => x.method === "POST" && x.path === completeUrl.pathname);
    eq(completes.length, 1, "completion POSTs");
    eq(completes[0].status, 200, "completion status");
    multipart = { chunk, parts: nparts, size: big.length, oid: sha256(big) };
  });

  // 3. The same LFS content again: the server already has it, so no upload.
  await step("uploadFile(lfs dedup)", async () => {
    const out = await doCommit("uploadFile copy/dup.bin", () => hub.uploadFile({ ...r,
      file: { path: "copy/dup.bin", content: new Blob([small]) }, commitTitle: "Add a duplicate" }));
    titles.set(out.commit.oid, "Add a duplicate");
    expected.add("copy/dup.bin", small);
    const b = batchReplies.filter((x) => x.step === currentStep);
    eq(b.length, 1, "LFS batch calls");
    eq(b[0].json.objects[0].actions, undefined, "a stored object comes back without actions");
    eq(stepRequests(currentStep).filter((x) => x.method === "PUT").length, 0, "PUTs for a stored object");
  });

  // 3b. An "edit" operation (byte-range splices over a lazily downloaded LFS
  // blob) and an upload whose content is a URL (the /resolve/ URL of an LFS
  // file, fetched through the CDN redirect).
  await step("commit(edit, URL content)", async () => {
    // (The original is an in-memory Blob: a SplicedBlob over the client's own
    // lazy WebBlob cannot be sliced into multipart parts, a client bug.)
    const original = new Blob([big]);
    const edited = Buffer.concat([big.subarray(0, 10), Buffer.from("EDITED"), big.subarray(20, 300_000),
                                  big.subarray(300_010)]);
    let out = await doCommit("uploadFile(edits)", () => hub.uploadFile({ ...r, commitTitle: "Edit a copy",
      file: { path: "data/edited.bin", originalContent: original, edits: [
        { start: 10, end: 20, content: new Blob(["EDITED"]) },
        { start: 300_000, end: 300_010, content: new Blob([]) }] } }));
    titles.set(out.commit.oid, "Edit a copy");
    expected.add("data/edited.bin", edited);
    const b = batchReplies.filter((x) => x.step === currentStep);
    eq(b.length, 1, "LFS batch calls for the edited file");
    eq(b[0].json.objects[0].oid, sha256(edited), "edited object oid");
    // A small edit over a lazily downloaded LFS blob: one basic PUT.
    const lazy = await hub.downloadFile({ ...r, path: "data/small.bin", xet: false });
    const smallEdited = Buffer.concat([Buffer.from("HEAD"), small.subarray(100)]);
    out = await doCommit("uploadFile(edits over a WebBlob)", () => hub.uploadFile({ ...r,
      commitTitle: "Edit a downloaded file", file: { path: "data/small-edited.bin", originalContent: lazy,
        edits: [{ start: 0, end: 100, content: new Blob(["HEAD"]) }] } }));
    titles.set(out.commit.oid, "Edit a downloaded file");
    expected.add("data/small-edited.bin", smallEdited);
    // URL content is fetched without the token (createBlobs gets no
    // accessToken): fine for a public repo, refused (401) for a private one.
    const urlFiles = [{ path: "copy/from-url.bin", content: new URL(`${repoUrl}/resolve/main/data/multipart.bin`) }];
    if (isPrivate) {
      await rejects(hub.uploadFiles({ ...r, commitTitle: "Copy from a URL", files: urlFiles }), 401,
                    "URL content from a private repo (fetched anonymously)");
      return;
    }
    out = await doCommit("uploadFiles(URL)", () => hub.uploadFiles({ ...r, commitTitle: "Copy from a URL",
      files: urlFiles }));
    titles.set(out.commit.oid, "Copy from a URL");
    expected.add("copy/from-url.bin", big);
    const b2 = batchReplies.filter((x) => x.step === currentStep);
    eq(b2.length, 3, "LFS batch calls");
    eq(b2[2].json.objects[0].oid, sha256(big), "the URL content hashes to the original");
    eq(b2[2].json.objects[0].actions, undefined, "the URL content is already stored");
  });

  // 4. commit with adds and deletes; deleteFile / deleteFiles.
  const abc = Buffer.from("abc"), ddd = Buffer.from("ddd");
  let deleteCommit;
  await step("commit(add+delete)", async () => {
    const out = await doCommit("commit", () => hub.commit({ ...r, title: "Mixed commit", operations: [
      { operation: "addOrUpdate", path: "a/b/c.txt", content: new Blob([abc]) },
      { operation: "addOrUpdate", path: "a/d.txt", content: new Blob([ddd]) },
      { operation: "delete", path: "hello.txt" },
      { operation: "delete", path: "docs/7.txt" },
    ] }));
    deleteCommit = out.commit.oid;
    titles.set(deleteCommit, "Mixed commit");
    expected.add("a/b/c.txt", abc);
    expected.add("a/d.txt", ddd);
    expected.del("hello.txt");
    expected.del("docs/7.txt");
  });
  await step("deleteFile/deleteFiles", async () => {
    let out = await doCommit("deleteFile", () => hub.deleteFile({ ...r, path: "docs/6.txt",
      commitTitle: "Remove doc 6" }));
    titles.set(out.commit.oid, "Remove doc 6");
    expected.del("docs/6.txt");
    out = await doCommit("deleteFiles", () => hub.deleteFiles({ ...r,
      paths: ["docs/5.txt", "nested/a/b/c.txt"], commitTitle: "Remove two files" }));
    titles.set(out.commit.oid, "Remove two files");
    expected.del("docs/5.txt");
    expected.del("nested/a/b/c.txt");
    await rejects(hub.deleteFile({ ...r, path: "no/such/file.txt" }), 404, "deleting a missing file");
  });
  await step("commit(stale parentCommit)", async () => {
    await rejects(hub.commit({ ...r, title: "stale", parentCommit: helloCommit, operations: [
      { operation: "addOrUpdate", path: "stale.txt", content: new Blob(["stale"]) }] }),
      412, "commit on a stale parentCommit");
    const head = mainCommits.at(-1);
    const out = await doCommit("commit with the right parentCommit", () => hub.commit({ ...r,
      title: "Fresh parent", parentCommit: head, operations: [
        { operation: "addOrUpdate", path: "fresh.txt", content: new Blob(["fresh\n"]) }] }));
    titles.set(out.commit.oid, "Fresh parent");
    expected.add("fresh.txt", Buffer.from("fresh\n"));
  });
  const mainSha = mainCommits.at(-1);
  summary.mainSha = mainSha;
  summary.commitsByRun = mainCommits.length;

  // 5. repo info: sha is the last commit (HEAD and main).
  await step(`${type}Info`, async () => {
    const head = await info({ ...c, name, additionalFields: ["sha"] });
    eq(head.sha, mainSha, `${type}Info(HEAD).sha`);
    eq(head.name, name, `${type}Info name`);
    eq(head.private, isPrivate, `${type}Info private`);
    ok(head.updatedAt instanceof Date && !isNaN(head.updatedAt), `${type}Info updatedAt`);
    const m = await info({ ...c, name, revision: "main", additionalFields: ["sha"] });
    eq(m.sha, mainSha, `${type}Info(main).sha`);
    const old = await info({ ...c, name, revision: helloCommit, additionalFields: ["sha"] });
    eq(old.sha, helloCommit, `${type}Info(<commit sha>).sha`);
    await rejects(info({ ...c, name, revision: "no-such-branch" }), 404, "info of a missing revision");
  });

  // 6. listFiles across page boundaries.
  await step("listFiles(recursive)", async () => {
    const seen = new Map();
    for await (const e of hub.listFiles({ ...r, recursive: true })) {
      ok(!seen.has(e.path), `listFiles returned ${e.path} twice`);
      seen.set(e.path, e);
    }
    const want = [...expected.files.keys(), ...expected.dirs()].sort();
    eq([...seen.keys()].sort(), want, "listFiles(recursive) paths");
    for (const [p, buf] of expected.files) checkFileEntry(seen.get(p), buf, `listFiles ${p}`);
    for (const d of expected.dirs()) eq(seen.get(d).type, "directory", `listFiles ${d} type`);
    const pages = stepRequests(currentStep).filter((x) => x.path.includes("/tree/"));
    ok(pages.every((x) => x.status === 200), "tree pages: 200");
    ok(pages.length >= 2, `listFiles must follow Link rel="next" (got ${pages.length} page(s); ` +
       "start the server with a small --page-size)");
    if (PAGE_SIZE) eq(pages.length, Math.ceil(want.length / PAGE_SIZE), "tree pages");
    ok(pages.slice(1).every((x) => /[?&]cursor=/.test(x.query)), "next pages carry a cursor");
    summary.treeEntries = want.length;
    summary.treePages = pages.length;
  });
  await step("listFiles(non-recursive, path, expand)", async () => {
    const root = [];
    for await (const e of hub.listFiles({ ...r })) root.push([e.path, e.type]);
    const top = new Set([...expected.files.keys(), ...expected.dirs()].filter((p) => !p.includes("/")));
    eq(root.map((x) => x[0]).sort(), [...top].sort(), "listFiles(root) paths");
    const docsList = [];
    for await (const e of hub.listFiles({ ...r, path: "docs" })) docsList.push(e.path);
    eq(docsList.sort(), ["docs/0.txt", "docs/1.txt", "docs/2.txt", "docs/3.txt", "docs/4.txt"],
       "listFiles(docs)");
    const exp = [];
    for await (const e of hub.listFiles({ ...r, path: "a", recursive: true, expand: true })) exp.push(e);
    eq(exp.map((e) => e.path).sort(), ["a/b", "a/b/c.txt", "a/d.txt"], "listFiles(a, expand) paths");
    const d = exp.find((e) => e.path === "a/d.txt");
    eq(d.lastCommit?.id, deleteCommit, "listFiles(expand) lastCommit.id");
    eq(d.lastCommit?.title, "Mixed commit", "listFiles(expand) lastCommit.title");
    await rejects((async () => { for await (const _ of hub.listFiles({ ...r, path: "nope" })); })(),
                  404, "listFiles of a missing folder");
  });

  // 7. pathsInfo: missing paths are omitted.
  await step("pathsInfo", async () => {
    const asked = ["a/d.txt", "data/multipart.bin", "hello.txt", "no/such/file", "a", "a/d.txt"];
    const res = await hub.pathsInfo({ ...r, paths: asked, expand: true });
    eq(res.map((e) => e.path).sort(), ["a", "a/d.txt", "data/multipart.bin"], "pathsInfo paths");
    const by = new Map(res.map((e) => [e.path, e]));
    checkFileEntry(by.get("a/d.txt"), ddd, "pathsInfo a/d.txt");
    checkFileEntry(by.get("data/multipart.bin"), big, "pathsInfo data/multipart.bin");
    eq(by.get("a").type, "directory", "pathsInfo a type");
    eq(by.get("a/d.txt").lastCommit?.id, deleteCommit, "pathsInfo lastCommit.id");
    eq(by.get("a/d.txt").lastCommit?.title, "Mixed commit", "pathsInfo lastCommit.title");
    ok(by.get("a/d.txt").lastCommit.date instanceof Date, "pathsInfo lastCommit.date");
    eq(by.get("data/multipart.bin").lastCommit?.id, multipartCommit, "pathsInfo multipart lastCommit.id");
    const plain = await hub.pathsInfo({ ...r, paths: ["a/d.txt"] });
    eq(plain.length, 1, "pathsInfo without expand");
    eq(plain[0].lastCommit, undefined, "pathsInfo without expand: no lastCommit");
    const old = await hub.pathsInfo({ ...r, paths: ["hello.txt", "a/d.txt"], revision: helloCommit });
    eq(old.map((e) => e.path), ["hello.txt"], "pathsInfo at an older commit");
  });

  // 8. fileExists.
  await step("fileExists", async () => {
    eq(await hub.fileExists({ ...r, path: "a/d.txt" }), true, "fileExists a/d.txt");
    eq(await hub.fileExists({ ...r, path: "data/multipart.bin" }), true, "fileExists LFS file");
    eq(await hub.fileExists({ ...r, path: "hello.txt" }), false, "fileExists of a deleted file");
    eq(await hub.fileExists({ ...r, path: "no/such/file" }), false, "fileExists of a missing file");
    eq(await hub.fileExists({ ...r, path: "hello.txt", revision: helloCommit }), true,
       "fileExists at an older commit");
  });

  // 9. fileDownloadInfo: size and etag, regular and LFS; raw pointer.
  await step("fileDownloadInfo", async () => {
    const reg = await hub.fileDownloadInfo({ ...r, path: "a/d.txt" });
    eq(reg.size, ddd.length, "regular size");
    eq(reg.etag, `"${gitBlobSha(ddd)}"`, "regular etag");
    eq(reg.url, `${repoUrl}/resolve/main/a/d.txt`, "regular url");
    eq(reg.xet, undefined, "regular xet");
    const lfs = await hub.fileDownloadInfo({ ...r, path: "data/multipart.bin" });
    eq(lfs.size, big.length, "LFS size");
    eq(lfs.etag, `"${sha256(big)}"`, "LFS etag");
    eq(lfs.url, `${repoUrl}/resolve/main/data/multipart.bin`, "LFS url (the CDN URL is not kept)");
    eq(lfs.xet, undefined, "LFS xet");
    const reqs = stepRequests(currentStep);
    const lfsReq = reqs.find((x) => x.path.endsWith("/data/multipart.bin"));
    eq(lfsReq.status, 206, "LFS probe status");
    eq(lfsReq.redirected, true, "the LFS probe follows the /resolve/ redirect");
    ok(lfsReq.finalOrigin !== "hub", "the LFS probe ends on the CDN origin");
    const raw = await hub.fileDownloadInfo({ ...r, path: "data/multipart.bin", raw: true });
    const ptr = lfsPointer(big);
    eq(raw.size, ptr.length, "raw pointer size");
    eq(raw.etag, `"${gitBlobSha(ptr)}"`, "raw pointer etag");
    eq(await hub.fileDownloadInfo({ ...r, path: "no/such/file" }), null, "missing file");
    const atOld = await hub.fileDownloadInfo({ ...r, path: "hello.txt", revision: helloCommit });
    eq(atOld.size, hello.length, "size at an older commit");
  });

  // 10. downloadFile with ranged slices.
  const slices = [];
  await step("downloadFile", async () => {
    const blob = await hub.downloadFile({ ...r, path: "data/multipart.bin", xet: false });
    eq(blob.size, big.length, "LFS blob size");
    const chunk = multipart.chunk;
    const ranges = [[0, 1], [0, 10], [chunk - 1, chunk + 1], [1000, 300_000],
                    [big.length - 100, big.length], [big.length - 1, big.length], [5, 5 + chunk * 2]];
    for (const [a, b] of ranges) {
      const got = Buffer.from(await blob.slice(a, b).arrayBuffer());
      bytesEq(got, big.subarray(a, b), `slice(${a}, ${b})`);
      slices.push([a, b]);
    }
    const nested2 = blob.slice(1000, 2000).slice(10, 20);
    bytesEq(Buffer.from(await nested2.arrayBuffer()), big.subarray(1010, 1020), "slice of a slice");
    bytesEq(Buffer.from(await blob.arrayBuffer()), big, "whole LFS blob");
    // The first ranged request is fileDownloadInfo's probe (bytes=0-0).
    const ranged = stepRequests(currentStep).filter((x) => x.range);
    eq(ranged.shift()?.range, "bytes=0-0", "downloadFile starts with a bytes=0-0 probe");
    eq(ranged.map((x) => x.range), [...ranges.map(([a, b]) => `bytes=${a}-${b - 1}`), "bytes=1010-1019"],
       "Range headers sent for the slices");
    ok(ranged.every((x) => x.status === 206 && x.redirected && x.finalOrigin !== "hub"),
       "ranged reads: 206 from the CDN after the redirect");
    const reg = await hub.downloadFile({ ...r, path: "a/d.txt", xet: false });
    eq(reg.size, ddd.length, "regular blob size");
    bytesEq(Buffer.from(await reg.arrayBuffer()), ddd, "regular blob");
    bytesEq(Buffer.from(await reg.slice(1, 3).arrayBuffer()), ddd.subarray(1, 3), "regular slice");
    const raw = await hub.downloadFile({ ...r, path: "data/multipart.bin", raw: true, xet: false });
    bytesEq(Buffer.from(await raw.arrayBuffer()), lfsPointer(big), "raw download = LFS pointer");
    const old = await hub.downloadFile({ ...r, path: "hello.txt", revision: helloCommit, xet: false });
    bytesEq(Buffer.from(await old.arrayBuffer()), hello, "download at an older commit");
    eq(await hub.downloadFile({ ...r, path: "no/such/file" }), null, "download of a missing file");
  });

  // 11. downloadFileToCacheDir.
  const storage = join(cacheDir, `${type}s--${name.split("/").join("--")}`);
  await step("downloadFileToCacheDir", async () => {
    const p = await hub.downloadFileToCacheDir({ ...r, path: "data/multipart.bin", cacheDir });
    eq(p, join(storage, "snapshots", multipartCommit, "data", "multipart.bin"), "cached path");
    ok(lstatSync(p).isSymbolicLink(), "the snapshot entry is a symlink");
    eq(realpathSync(p), realpathSync(join(storage, "blobs", sha256(big))), "LFS blob named by sha256");
    bytesEq(readFileSync(p), big, "cached LFS file");
    const q = await hub.downloadFileToCacheDir({ ...r, path: "a/d.txt", cacheDir });
    eq(q, join(storage, "snapshots", deleteCommit, "a", "d.txt"), "cached regular path");
    eq(basename(readlinkSync(q)), gitBlobSha(ddd), "regular blob named by git oid");
    bytesEq(readFileSync(q), ddd, "cached regular file");
  });

  // 12. snapshotDownload of main: every file, byte for byte.
  async function checkSnapshot(revision, state, sha) {
    const folder = await hub.snapshotDownload({ ...r, revision, cacheDir });
    eq(folder, join(storage, "snapshots", sha), `snapshotDownload(${revision}) folder`);
    eq(readFileSync(join(storage, "refs", revision), "utf8"), sha, `refs/${revision}`);
    eq(walkFiles(folder), [...state.files.keys()].sort(), `snapshot(${revision}) files`);
    for (const [p, buf] of state.files) bytesEq(readFileSync(join(folder, p)), buf, `snapshot(${revision}) ${p}`);
    for (const d of state.dirs()) ok(statSync(join(folder, d)).isDirectory(), `snapshot dir ${d}`);
  }
  await step("snapshotDownload(main)", async () => {
    await checkSnapshot("main", expected, mainSha);
  });

  // 13. Branches.
  const onDev = expected.clone();
  let devCommit;
  await step("createBranch", async () => {
    await hub.createBranch({ ...r, branch: "dev" });
    eq((await info({ ...c, name, revision: "dev", additionalFields: ["sha"] })).sha, mainSha, "dev starts at main");
    await rejects(hub.createBranch({ ...r, branch: "dev" }), 409, "createBranch of an existing branch");
    await hub.createBranch({ ...r, branch: "old", revision: helloCommit });
    eq((await info({ ...c, name, revision: "old", additionalFields: ["sha"] })).sha, helloCommit, "old branch sha");
    eq(await hub.fileExists({ ...r, path: "hello.txt", revision: "old" }), true, "hello.txt on old");
    await hub.createBranch({ ...r, branch: "old", revision: "main", overwrite: true });
    eq((await info({ ...c, name, revision: "old", additionalFields: ["sha"] })).sha, mainSha, "overwritten branch");
    await hub.createBranch({ ...r, branch: "void", empty: true });
    const voidFiles = [];
    for await (const e of hub.listFiles({ ...r, revision: "void", recursive: true })) voidFiles.push(e.path);
    eq(voidFiles, [], "an empty branch has no files");
    eq(await hub.downloadFile({ ...r, revision: "void", path: "a/d.txt" }), null, "download from an empty branch");
    await hub.createBranch({ ...r, branch: "feat/x" });
  });
  await step("uploadFiles(branch)", async () => {
    const devTxt = Buffer.from("dev only\n"), devBin = randomBytes(70_000);
    const out = await doCommit("uploadFiles dev", () => hub.uploadFiles({ ...r, branch: "dev",
      commitTitle: "Dev work", files: [{ path: "dev.txt", content: new Blob([devTxt]) },
                                       { path: "dev/blob.bin", content: new Blob([devBin]) }] }),
      { branch: "dev" });
    devCommit = out.commit.oid;
    titles.set(devCommit, "Dev work");
    onDev.add("dev.txt", devTxt);
    onDev.add("dev/blob.bin", devBin);
    eq((await info({ ...c, name, revision: "dev", additionalFields: ["sha"] })).sha, devCommit, "dev head");
    eq((await info({ ...c, name, additionalFields: ["sha"] })).sha, mainSha, "main is untouched");
    eq(await hub.fileExists({ ...r, path: "dev.txt" }), false, "dev.txt is not on main");
    eq(await hub.fileExists({ ...r, path: "dev.txt", revision: "dev" }), true, "dev.txt on dev");
    // A branch name with a slash: listFiles sends it unencoded.
    const fx = Buffer.from("feature\n");
    const o2 = await doCommit("uploadFile feat/x", () => hub.uploadFile({ ...r, branch: "feat/x",
      file: { path: "feature/notes.txt", content: new Blob([fx]) }, commitTitle: "Feature" }),
      { branch: "feat/x" });
    const fl = [];
    for await (const e of hub.listFiles({ ...r, revision: "feat/x", path: "feature" })) fl.push(e.path);
    eq(fl, ["feature/notes.txt"], "listFiles(revision feat/x, path feature)");
    const b = await hub.downloadFile({ ...r, revision: "feat/x", path: "feature/notes.txt", xet: false });
    bytesEq(Buffer.from(await b.arrayBuffer()), fx, "download from feat/x");
    eq((await info({ ...c, name, revision: "feat/x", additionalFields: ["sha"] })).sha, o2.commit.oid,
       "feat/x head");
  });

  // 14. listCommits (paginated) and countCommits.
  await step("listCommits/countCommits", async () => {
    const all = [];
    for await (const x of hub.listCommits({ ...r, revision: "dev", batchSize: 2 })) all.push(x);
    const mine = [devCommit, ...[...mainCommits].reverse()];
    eq(all.slice(0, mine.length).map((x) => x.oid), mine, "listCommits(dev) newest first");
    eq(all.length, baseCount + mine.length, "listCommits(dev) length");
    eq(all[mine.length].oid, baseSha, "the commit before this run's commits");
    for (const x of all.slice(0, mine.length)) eq(x.title, titles.get(x.oid), `title of ${x.oid}`);
    ok(all.every((x) => x.date instanceof Date && !isNaN(x.date)), "commit dates");
    ok(all.slice(0, mine.length).every((x) => x.authors.length >= 1 && x.authors[0].username === summary.user),
       "commit author is the token's user");
    const pages = stepRequests(currentStep).filter((x) => x.path.includes("/commits/"));
    eq(pages.length, Math.ceil(all.length / 2), "listCommits pages with batchSize 2");
    eq(await hub.countCommits({ ...r, revision: "dev" }), all.length, "countCommits(dev)");
    eq(await hub.countCommits({ ...r }), baseCount + mainCommits.length, "countCommits(main)");
    const mainList = [];
    for await (const x of hub.listCommits({ ...r, batchSize: 3 })) mainList.push(x.oid);
    eq(mainList.slice(0, mainCommits.length), [...mainCommits].reverse(), "listCommits(main)");
    eq(mainList.length, baseCount + mainCommits.length, "listCommits(main) length");
    summary.commits = { main: mainList.length, dev: all.length };
  });

  await step("snapshotDownload(dev)", async () => {
    await checkSnapshot("dev", onDev, devCommit);
  });

  // 15. A pull request commit.
  await step("commit(pull request)", async () => {
    const pr = Buffer.from("proposed\n");
    const out = await doCommit("PR commit", () => hub.uploadFile({ ...r, isPullRequest: true,
      file: { path: "proposal.txt", content: new Blob([pr]) }, commitTitle: "Proposal" }),
      { isPullRequest: true });
    ok(/\/discussions\/\d+$/.test(out.pullRequestUrl ?? ""), `pullRequestUrl ${out.pullRequestUrl}`);
    ok(out.pullRequestUrl.startsWith(`${repoUrl}/discussions/`), "pullRequestUrl is on the repo");
    const ref = `refs/pr/${out.pullRequestUrl.split("/").at(-1)}`;
    const l = [];
    for await (const e of hub.listFiles({ ...r, revision: ref })) l.push(e.path);
    ok(l.includes("proposal.txt"), `listFiles(${ref}) has the proposal`);
    const b = await hub.downloadFile({ ...r, revision: ref, path: "proposal.txt", xet: false });
    bytesEq(Buffer.from(await b.arrayBuffer()), pr, `download from ${ref}`);
    eq(await hub.fileExists({ ...r, path: "proposal.txt" }), false, "the PR does not touch main");
    eq((await info({ ...c, name, additionalFields: ["sha"] })).sha, mainSha, "main after the PR");
    summary.pullRequest = ref;
  });

  // 16. deleteBranch.
  await step("deleteBranch", async () => {
    await hub.deleteBranch({ ...r, branch: "dev" });
    await rejects((async () => { for await (const _ of hub.listCommits({ ...r, revision: "dev" })); })(),
                  404, "listCommits of a deleted branch");
    await rejects(hub.deleteBranch({ ...r, branch: "dev" }), 404, "deleting a missing branch");
    await hub.deleteBranch({ ...r, branch: "feat/x" });
    await hub.deleteBranch({ ...r, branch: "void" });
    await hub.deleteBranch({ ...r, branch: "old" });
    await rejects(hub.deleteBranch({ ...r, branch: "main" }), 403, "deleting the default branch");
    eq(await hub.countCommits({ ...r }), baseCount + mainCommits.length, "main survives");
  });

  summary.multipart = multipart;
  summary.slices = slices;
  summary.files = [...expected.files.keys()].sort();
  summary.steps = steps.map((s) => s.name);
  const cdnReqs = requests.filter((x) => x.origin !== "hub");
  summary.requests = {
    total: requests.length,
    toOtherOrigins: cdnReqs.length,
    redirectedToOtherOrigins: requests.filter((x) => x.redirected && x.finalOrigin !== "hub").length,
    withAuthToOtherOrigins: cdnReqs.filter((x) => x.auth).length,
  };
  summary.checks = checks;
  summary.ok = true;
}

try {
  await run();
  console.log(JSON.stringify(summary));
} catch (e) {
  const msg = e instanceof Mismatch ? e.message : `${currentStep}: ${e?.name}: ${e?.message ?? e}`;
  console.error(`FAIL: ${msg}`);
  if (e?.stack) console.error(e.stack);
  if (e?.cause) console.error("cause:", e.cause?.stack ?? e.cause);
  if (e?.data) console.error("error data:", JSON.stringify(e.data));
  process.exit(1);
}
