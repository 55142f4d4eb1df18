// The official JavaScript client @huggingface/hub (tests/js, pinned by its
// package-lock.json) as a peer in the benchmarks: it downloads the same
// files from the same local Hub as hubfs reads.
//
// Usage (HF_TOKEN optional):
//   node peer_js.mjs download <hubUrl> <repo> <path> <out file>
//       downloadFile(), its body streamed into <out file>.
//   node peer_js.mjs snapshot <hubUrl> <repo> <cache dir>
//       snapshotDownload() into <cache dir>; prints the snapshot folder.
// <repo> is models/NS/NAME or datasets/NS/NAME.  One JSON line on stdout.

import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

const hub = await import(new URL("../js/node_modules/@huggingface/hub/dist/index.mjs",
                                 import.meta.url));

const [cmd, hubUrlArg, repoArg, ...rest] = process.argv.slice(2);
if (!["download", "snapshot"].includes(cmd) || !hubUrlArg || !repoArg) {
  console.error("usage: node peer_js.mjs download|snapshot <hubUrl> <repo> ...");
  process.exit(2);
}
const hubUrl = hubUrlArg.replace(/\/+$/, "");
const [plural, ...name] = repoArg.split("/");
const type = { models: "model", datasets: "dataset", spaces: "space" }[plural];
if (!type || name.length !== 2) {
  console.error(`bad repo ${repoArg}: want models/NS/NAME or datasets/NS/NAME`);
  process.exit(2);
}
const params = { hubUrl, repo: { type, name: name.join("/") } };
if (process.env.HF_TOKEN) params.accessToken = process.env.HF_TOKEN;

try {
  const t0 = performance.now();
  let out;
  if (cmd === "download") {
    const [path, file] = rest;
    const blob = await hub.downloadFile({ ...params, path, xet: false });
    if (!blob) throw new Error(`downloadFile(${path}): not found`);
    await pipeline(Readable.fromWeb(blob.stream()), createWriteStream(file));
    out = { bytes: blob.size };
  } else {
    const [cacheDir] = rest;
    out = { snapshot: await hub.snapshotDownload({ ...params, cacheDir }) };
  }
  out.secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify(out));
} catch (e) {
  console.error(`FAIL: ${e.statusCode ? "HTTP " + e.statusCode + ": " : ""}${e.message}`);
  process.exit(1);
}
