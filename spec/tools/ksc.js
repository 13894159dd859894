#!/usr/bin/env node
// Command-line front end for the Kaitai Struct compiler's npm build, which ships only a
// programmatic API. Usage mirrors the JVM compiler's:
//
//   node spec/tools/ksc.js [--debug] -t python --outdir DIR FILE.ksy
//
// `--debug` (alias `--read-pos`) is the JVM compiler's `--read-pos --no-auto-read`: objects record
// the start and end offset of every field in `_debug`, and `_read()` is called explicitly.
//   node spec/tools/ksc.js --version
//
// Needs the npm packages `kaitai-struct-compiler` and `js-yaml` (global installs are found
// through `npm root -g`).
"use strict";

const fs = require("fs");
const path = require("path");
const childProcess = require("child_process");

function load(name) {
  try {
    return require(name);
  } catch (_) {
    let root = "";
    try {
      root = childProcess.execSync("npm root -g", { encoding: "utf8" }).trim();
    } catch (_) {
      // fall through to the error below
    }
    try {
      return require(path.join(root, name));
    } catch (_) {
      process.stderr.write(
        `ksc.js: cannot load the npm package '${name}'; install it with ` +
          `'npm install -g kaitai-struct-compiler js-yaml'\n`
      );
      process.exit(2);
    }
  }
}

function usage() {
  process.stderr.write("usage: ksc.js [--version] -t LANG --outdir DIR FILE.ksy...\n");
  process.exit(2);
}

const args = process.argv.slice(2);
let target = null;
let outdir = ".";
let debug = false;
const inputs = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--version" || a === "-V") {
    const compiler = load("kaitai-struct-compiler");
    process.stdout.write(`kaitai-struct-compiler ${compiler.version} (npm build)\n`);
    process.exit(0);
  } else if (a === "--debug" || a === "--read-pos") {
    debug = true;
  } else if (a === "-t" || a === "--target") {
    target = args[++i];
  } else if (a === "-d" || a === "--outdir") {
    outdir = args[++i];
  } else if (a.startsWith("-")) {
    usage();
  } else {
    inputs.push(a);
  }
}
if (!target || inputs.length === 0 || outdir === undefined) usage();

const compiler = load("kaitai-struct-compiler");
const yaml = load("js-yaml");

async function main() {
  fs.mkdirSync(outdir, { recursive: true });
  for (const input of inputs) {
    const ksy = yaml.load(fs.readFileSync(input, "utf8"));
    const importer = {
      importYaml(name) {
        const file = path.join(path.dirname(input), name + ".ksy");
        return Promise.resolve(yaml.load(fs.readFileSync(file, "utf8")));
      },
    };
    const files = await compiler.compile(target, ksy, importer, debug);
    for (const [name, text] of Object.entries(files)) {
      fs.writeFileSync(path.join(outdir, name), text);
    }
  }
}

main().catch((e) => {
  const msg = e && e.toString ? e.toString() : String(e);
  process.stderr.write(`ksc.js: ${msg}\n`);
  if (e && e.s$1) process.stderr.write(`${e.s$1}\n`);
  process.exit(1);
});
