#!/usr/bin/env python3
"""Reads a crak image with the parser that kaitai-struct-compiler generates from spec/crak.ksy
and prints it as JSON in the shape of the crak-format model (serde of `crak_format::Image`), so
that it can be compared field by field with the Rust reader.

    ksy_dump.py [--parser-dir DIR] [--pages] [--no-crc] [--stream] IMAGE
    ksy_dump.py [--parser-dir DIR] [--pages] [--no-crc] [--stream] --jsonl IMAGE...

Every field of every record is read by the generated parser. What a .ksy cannot express is
checked here, in file order, as a reader of spec/crak-format.md must: each record's CRC32C
before its payload is used (bad-crc), unknown CRITICAL records (unknown-critical-record), the
ordering rules of §2.3 (orphan-record, duplicate), END's counts and digest (bad-end,
bad-digest), a missing END (truncated) and bytes after END (trailing-data).

The model includes, as crak-dump's does, the AUTH record (`auth`), records of unknown kinds
with the number of known records before each (`unknown`), and known records' non-default
flags and payload bytes past the fields the .ksy reads (`extras`).

Output: the model as JSON on stdout and exit status 0; or, for an image a reader must reject,
`{"error": KIND, "offset": N, "record": NAME, "field": NAME, "message": TEXT}` on stdout and
exit status 1. Exit status 2 is a usage or environment error.

With `--jsonl`, each image gives one line, `{"image": PATH, "model": MODEL}` or
`{"image": PATH, "error": REPORT}`, and the exit status is 1 when any image was rejected.

`--pages` prints page data, XSAVE areas, siginfos, fd contents and pipe data in full (base64),
as `crak-dump IMAGE --json --pages` does; without it, those blobs are elided the way
`crak_format::to_json(image, false)` elides them. `--no-crc` skips the CRC and digest checks,
whose pure-Python CRC32C is slow on images of many megabytes.

`--stream` applies a stream reader's rule too: a metadata record longer than 64 MiB is
`too-large` (§2.2), whatever remains of the file.

`--parser-dir` names a directory holding the generated `crak.py`; without it, spec/crak.ksy is
compiled into a temporary directory with `kaitai-struct-compiler --read-pos --no-auto-read`
(or `node spec/tools/ksc.js --debug`). A parser compiled without positions works too, but its
errors then name the record and not the field, at the payload's offset.
"""

import argparse
import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

SPEC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAGIC = b"\x89CRAK\r\n\x1a"
FILE_HEADER_LEN = 16
RECORD_HEADER_LEN = 16
CRC_LEN = 4

RECORD_NAMES = {
    0x0001: "HEADER",
    0x0002: "PROCESS",
    0x0003: "CREDS",
    0x0004: "MM",
    0x0005: "RLIMITS",
    0x0006: "SIGACTIONS",
    0x0007: "THREAD",
    0x0008: "XSAVE",
    0x0009: "SIGQUEUE",
    0x000A: "VMA",
    0x000B: "PAGES",
    0x000C: "ZERO_PAGES",
    0x000D: "FD",
    0x000E: "PIPE_DATA",
    0x0010: "NOTE",
    0x0011: "AUTH",
    0x0012: "SHM",
    0x0013: "SEM",
    0x0014: "MSG",
    0x0015: "TIMERS",
    0x0016: "LOCKS",
    0x0017: "SCM",
    0x00FF: "END",
}
KIND_HEADER = 0x0001
KIND_PROCESS = 0x0002
KIND_PAGES = 0x000B
KIND_NOTE = 0x0010
KIND_AUTH = 0x0011
KIND_END = 0x00FF


def default_flags(kind):
    """The record flags a writer uses (§2.2): CRITICAL for every known kind but NOTE and AUTH."""
    return 0 if kind in (KIND_NOTE, KIND_AUTH) else 1

# Kinds whose payload carries page-sized data (spec §2.2); every other kind is metadata.
BULK_KINDS = {0x000B, 0x000D, 0x000E, 0x0012, 0x0014, 0x0017}
MAX_METADATA_PAYLOAD = 64 << 20
MAX_VMAS = 1 << 20
MAX_FDS = 1 << 20

GPR_NAMES = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
]


# --------------------------------------------------------------------------- CRC32C

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def _crc32c_python(data, crc=0):
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _pick_crc32c():
    """A native CRC32C when one is installed, else the table-driven one above."""
    try:
        import crc32c as native  # the `crc32c` PyPI package

        return lambda data, crc=0: native.crc32c(data, crc)
    except Exception:
        return _crc32c_python


crc32c = _pick_crc32c()


class Crc32c:
    """Incremental CRC32C."""

    def __init__(self):
        self.value = 0

    def update(self, data):
        self.value = crc32c(data, self.value)
        return self


# --------------------------------------------------------------------------- errors

class Reject(Exception):
    """An image a reader of spec/crak-format.md must reject."""

    def __init__(self, kind, offset, record=None, field=None, message=""):
        super().__init__(message or kind)
        self.kind = kind
        self.offset = offset
        self.record = record
        self.field = field
        self.message = message or kind

    def to_json(self):
        return {
            "error": self.kind,
            "offset": self.offset,
            "record": self.record,
            "field": self.field,
            "message": self.message,
        }


# --------------------------------------------------------------------------- the parser

def find_compiler():
    """The command that runs a Kaitai Struct compiler, or None."""
    ksc = shutil.which("kaitai-struct-compiler")
    if ksc:
        # The JVM build: --read-pos --no-auto-read give the same code as the npm build's debug mode.
        return [ksc, "--read-pos", "--no-auto-read"]
    if shutil.which("node"):
        return ["node", os.path.join(SPEC_DIR, "tools", "ksc.js"), "--debug"]
    return None


def compile_parser(out_dir):
    """Compiles spec/crak.ksy to Python in out_dir, recording field positions."""
    ksy = os.path.join(SPEC_DIR, "crak.ksy")
    base = find_compiler()
    if base is None:
        raise Usage("no Kaitai Struct compiler: install one with "
                    "'npm install -g kaitai-struct-compiler js-yaml'")
    cmd = base + ["-t", "python", "--outdir", out_dir, ksy]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise Usage("compiling %s failed (%s):\n%s%s"
                    % (ksy, " ".join(cmd), res.stdout, res.stderr))


def load_parser(parser_dir):
    """Imports the generated module `crak` from parser_dir."""
    try:
        import kaitaistruct  # noqa: F401
    except ImportError:
        raise Usage("the Python package 'kaitaistruct' is missing (pip install kaitaistruct)")
    sys.path.insert(0, parser_dir)
    try:
        return importlib.import_module("crak")
    finally:
        sys.path.pop(0)


class Usage(Exception):
    """A usage or environment error (exit status 2)."""


# --------------------------------------------------------------------------- JSON helpers

def byte_string(raw):
    """crak_format::ByteString: a JSON string when the bytes are UTF-8, else {"hex": ...}."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}


def blob(raw):
    """crak_format::Blob: standard base64 with padding."""
    return base64.b64encode(raw).decode("ascii")


# Fields whose name ends in `_len` but that are values of their own, not the length of a
# `bytes` field.
SCALAR_LEN_FIELDS = ("rseq_len", "robust_list_len")


def model_field_name(ksy_field):
    """The model's name for a .ksy field: `comm_len` and `comm` are both `comm`."""
    if ksy_field is None:
        return None
    if ksy_field.startswith("num_"):
        return ksy_field[4:]
    if ksy_field.endswith("_len") and ksy_field not in SCALAR_LEN_FIELDS:
        return ksy_field[:-4]
    return ksy_field


def locate_failure(obj):
    """In a partly read object of the debug-mode parser, the path of fields the read stopped
    at, outermost first, as [(object, field, start offset)]; [] without position information.
    Offsets are relative to the object's stream (the record's payload)."""
    seq = getattr(type(obj), "SEQ_FIELDS", None)
    debug = getattr(obj, "_debug", None)
    if not seq or debug is None:
        return []
    last = None
    for name in seq:
        if name in debug and "start" in debug[name]:
            last = name
    if last is None:
        return []
    info = debug[last]
    path = [(obj, last, info.get("start"))]
    if "end" not in info:
        value = getattr(obj, last, None)
        if isinstance(value, list):
            value = value[-1] if value else None
        if value is not None and hasattr(type(value), "SEQ_FIELDS"):
            path.extend(locate_failure(value))
    return path


def length_field(obj, field):
    """The field holding `field`'s length or count (`comm_len`, `num_tids`), if any."""
    seq = getattr(type(obj), "SEQ_FIELDS", [])
    for cand in (field + "_len", "num_" + field):
        if cand in seq:
            return cand
    return None


def field_start(obj, field):
    return obj._debug[field]["start"]


# --------------------------------------------------------------------------- model

def model_header(h):
    return {
        "arch": h.arch,
        "page_size": h.page_size,
        "capture_time_ns": h.capture_time_ns,
        "xsave_features": h.xsave_features,
        "xsave_size": h.xsave_size,
        "kernel_release": byte_string(h.kernel_release),
        "hostname": byte_string(h.hostname),
        "tool_version": byte_string(h.tool_version),
        "special_mappings": [
            {"kind": m.kind.name, "start": m.start, "end": m.end} for m in h.special_mappings
        ],
    }


def model_process(p):
    out = {k: getattr(p, k) for k in ("pid", "ppid", "pgid", "sid", "personality", "umask",
                                      "flags")}
    for k in ("comm", "exe", "cwd", "root", "cmdline", "environ"):
        out[k] = byte_string(getattr(p, k))
    out["tids"] = list(p.tids)
    return out


def model_creds(c):
    names = ["pid", "uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid",
             "cap_inheritable", "cap_permitted", "cap_effective", "cap_bounding", "cap_ambient",
             "securebits", "no_new_privs"]
    out = {k: getattr(c, k) for k in names}
    out["groups"] = list(c.groups)
    return out


def model_mm(m):
    names = ["pid", "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
             "start_stack", "arg_start", "arg_end", "env_start", "env_end"]
    out = {k: getattr(m, k) for k in names}
    out["auxv"] = [[e.key, e.value] for e in m.auxv]
    return out


def model_rlimits(r):
    return {
        "pid": r.pid,
        "limits": [{"resource": l.resource, "cur": l.cur, "max": l.max} for l in r.limits],
    }


def model_sigactions(s):
    return {
        "pid": s.pid,
        "actions": [
            {"signo": a.signo, "handler": a.handler, "flags": a.flags, "restorer": a.restorer,
             "mask": a.mask}
            for a in s.actions
        ],
    }


def model_thread(t):
    out = {
        "pid": t.pid,
        "tid": t.tid,
        "gpr": {name: getattr(t.gpr, name) for name in GPR_NAMES},
        "blocked": t.blocked,
        "pending": t.pending,
        "sas_sp": t.sas_sp,
        "sas_size": t.sas_size,
        "sas_flags": t.sas_flags,
        "rseq_len": t.rseq_len,
        "rseq_addr": t.rseq_addr,
        "rseq_sig": t.rseq_sig,
        "clear_child_tid": t.clear_child_tid,
    }
    ext = getattr(t, "ext", None)
    if ext is not None:
        out["ext"] = {
            "robust_list": ext.robust_list,
            "robust_list_len": ext.robust_list_len,
            "name": byte_string(ext.name),
        }
    return out


def model_xsave(x):
    return {"pid": x.pid, "tid": x.tid, "xstate_bv": x.xstate_bv, "area": blob(x.area)}


def model_sigqueue(q):
    return {"pid": q.pid, "tid": q.tid, "siginfos": [blob(s) for s in q.siginfos]}


def model_vma(v):
    return {
        "pid": v.pid,
        "kind": v.kind.name,
        "start": v.start,
        "end": v.end,
        "prot": v.prot,
        "flags": v.flags,
        "madvise": v.madvise,
        "pgoff": v.pgoff,
        "dev": v.dev,
        "ino": v.ino,
        "size": v.size,
        "mtime_ns": v.mtime_ns,
        "path": byte_string(v.path),
    }


def model_pages(p):
    return {"pid": p.pid, "addr": p.addr, "nr_pages": p.nr_pages, "data": blob(p.data)}


def model_zero_pages(z):
    return {"pid": z.pid, "addr": z.addr, "nr_pages": z.nr_pages}


def model_fd(f):
    m = {
        "pid": f.pid,
        "fd": f.fd,
        "fd_flags": f.fd_flags,
        "kind": f.kind.name,
        "open_flags": f.open_flags,
        "pos": f.pos,
        "dev": f.dev,
        "ino": f.ino,
        "rdev": f.rdev,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "mode": f.mode,
        "deleted": f.deleted == 1,
        "path": byte_string(f.path),
        "contents": blob(f.contents),
    }
    if f.description != 0:
        m["description"] = f.description
    return m


def model_pipe_data(p):
    return {"pipe_id": p.pipe_id, "capacity": p.capacity, "data": blob(p.data)}


def model_ipc_perm(p):
    return {"id": p.id, "key": p.key, "uid": p.uid, "gid": p.gid, "cuid": p.cuid,
            "cgid": p.cgid, "mode": p.mode}


def model_shm(s):
    return {"perm": model_ipc_perm(s.perm), "size": s.size, "cpid": s.cpid, "lpid": s.lpid,
            "data": blob(s.data)}


def model_sem(s):
    return {"perm": model_ipc_perm(s.perm),
            "sems": [{"value": m.value, "pid": m.pid} for m in s.sems]}


def model_msg(q):
    return {"perm": model_ipc_perm(q.perm), "qbytes": q.qbytes, "lspid": q.lspid,
            "lrpid": q.lrpid,
            "messages": [{"mtype": m.mtype, "text": blob(m.text)} for m in q.messages]}


def model_scm(s):
    return {"socket": s.socket, "message": s.message, "flags": s.flags, "pid": s.pid,
            "uid": s.uid, "gid": s.gid, "files": [model_fd(f) for f in s.files]}


# kind -> (model converter, list of the image) for the image-level records: System V IPC
# (format 1.2) and SCM (format 1.3)
IPC_KINDS = {
    0x0012: (model_shm, "shm_segments"),
    0x0013: (model_sem, "sem_sets"),
    0x0014: (model_msg, "msg_queues"),
    0x0017: (model_scm, "scm"),
}


def model_note(n):
    return {"key": byte_string(n.key), "value": byte_string(n.value)}


def model_auth(a):
    return {
        "algorithm": a.algorithm,
        "key_id": a.key_id.hex(),
        "entries": [
            {"kind": e.kind, "flags": e.flags, "offset": e.offset, "sha256": e.sha256.hex()}
            for e in a.entries
        ],
        "signature": a.signature.hex(),
    }


def model_timers(t):
    return {
        "pid": t.pid,
        "itimers": [
            {"which": i.which.name, "value_ns": i.value_ns, "interval_ns": i.interval_ns}
            for i in t.itimers
        ],
        "posix": [
            {"id": p.timer_id, "clockid": p.clockid, "notify": p.notify.name, "signo": p.signo,
             "tid": p.tid, "overrun": p.overrun, "sigval": p.sigval, "value_ns": p.value_ns,
             "interval_ns": p.interval_ns}
            for p in t.posix
        ],
    }


def model_locks(l):
    return {
        "pid": l.pid,
        "locks": [
            {"fd": k.fd, "kind": k.kind.name, "type": k.lock_type.name, "start": k.start,
             "len": k.len}
            for k in l.locks
        ],
    }


# Per-process slots added in 1.2: absent from the model (not null) when the image has none,
# as serde skips them; kept in this order after the 1.0 slots.
OPTIONAL_SLOTS = ("timers", "locks")


def new_process(record):
    return {
        "process": record,
        "creds": None,
        "mm": None,
        "rlimits": None,
        "sigactions": None,
        "threads": [],
        "xsaves": [],
        "sigqueues": [],
        "fds": [],
        "vmas": [],
        "pages": [],
        "zero_runs": [],
    }


# kind -> (model converter, slot in the process, whether at most one per process,
#          whether at most one per (pid, tid))
PER_PROCESS = {
    0x0003: (model_creds, "creds", True, False),
    0x0004: (model_mm, "mm", True, False),
    0x0005: (model_rlimits, "rlimits", True, False),
    0x0006: (model_sigactions, "sigactions", True, False),
    0x0007: (model_thread, "threads", False, True),
    0x0008: (model_xsave, "xsaves", False, True),
    0x0009: (model_sigqueue, "sigqueues", False, False),
    0x000A: (model_vma, "vmas", False, False),
    0x000B: (model_pages, "pages", False, False),
    0x000C: (model_zero_pages, "zero_runs", False, False),
    0x000D: (model_fd, "fds", False, False),
    0x0015: (model_timers, "timers", True, False),
    0x0016: (model_locks, "locks", True, False),
}


def elide(image):
    """The model without bulk data, as `crak_format::to_json(image, false)` prints it: every
    blob replaced by its length in bytes."""
    out = json.loads(json.dumps(image))
    for proc in out["processes"]:
        for x in proc["xsaves"]:
            x["area"] = len(base64.b64decode(x["area"]))
        for q in proc["sigqueues"]:
            q["siginfos"] = [len(base64.b64decode(s)) for s in q["siginfos"]]
        for f in proc["fds"]:
            f["contents"] = len(base64.b64decode(f["contents"]))
        for p in proc["pages"]:
            p["data"] = len(base64.b64decode(p["data"]))
    for p in out["pipes"]:
        p["data"] = len(base64.b64decode(p["data"]))
    for s in out.get("shm_segments", []):
        s["data"] = len(base64.b64decode(s["data"]))
    for x in out.get("scm", []):
        for f in x["files"]:
            f["contents"] = len(base64.b64decode(f["contents"]))
    for q in out.get("msg_queues", []):
        for m in q["messages"]:
            m["text"] = len(base64.b64decode(m["text"]))
    for u in out.get("unknown", []):
        u["payload"] = len(base64.b64decode(u["payload"]))
    for x in out.get("extras", []):
        x["extra"] = len(base64.b64decode(x["extra"]))
    return out


# --------------------------------------------------------------------------- the reader

class Reader:
    """Reads one image sequentially, as spec/crak-format.md §2 describes, with the generated
    parser reading every header and payload."""

    def __init__(self, data, parser, check_crc=True, stream=False):
        self.stream = stream
        self.data = data
        self.parser = parser
        self.Crak = parser.Crak
        self.check_crc = check_crc
        self.debug = hasattr(self.Crak.Record, "SEQ_FIELDS")

    def parse(self, obj):
        """Reads obj: explicitly in debug mode (no auto-read), already done otherwise."""
        if self.debug:
            obj._read()
        return obj

    def read(self):
        data = self.data
        size = len(data)
        ks = self.parser

        # File header (§2.1), rule by rule so that each gets its own error kind.
        if data[:8] != MAGIC[: min(8, size)]:
            raise Reject("bad-magic", 0, None, "magic", "not a crak image")
        if size < FILE_HEADER_LEN:
            raise Reject("truncated", size, None, "file header", "the file header is cut short")
        major = int.from_bytes(data[8:10], "little")
        if major != 1:
            raise Reject("unsupported-version", 8, None, "major",
                         "major version %d is not implemented" % major)
        flags = int.from_bytes(data[12:16], "little")
        if flags & 0xFFFF:
            raise Reject("unknown-flag", 12, None, "flags",
                         "unknown critical flag bits 0x%04x" % (flags & 0xFFFF))

        io = ks.KaitaiStream(ks.BytesIO(data))
        # The root object, built the way Crak._read builds it, so that records are read one at a
        # time and every check happens in file order.
        root = self.Crak.__new__(self.Crak)
        ks.KaitaiStruct.__init__(root, io)
        root._parent = None
        root._root = root
        root.records = []
        if self.debug:
            import collections

            root._debug = collections.defaultdict(dict)
        try:
            root.file_header = self.parse(self.Crak.FileHeader(io, root, root))
        except Exception as exc:
            raise Reject("bad-value", 0, None, "file_header", "%s: %s"
                         % (type(exc).__name__, exc))

        digest = Crc32c()
        if self.check_crc:
            digest.update(data[:FILE_HEADER_LEN])
        image = Image(root.file_header)
        offset = FILE_HEADER_LEN
        while True:
            if offset == size:
                raise Reject("truncated", offset, None, None, "the END record is missing")
            if size - offset < RECORD_HEADER_LEN:
                raise Reject("truncated", offset, None, "record header",
                             "a record header is cut short")
            kind = int.from_bytes(data[offset:offset + 2], "little")
            rflags = int.from_bytes(data[offset + 2:offset + 4], "little")
            length = int.from_bytes(data[offset + 8:offset + 16], "little")
            name = RECORD_NAMES.get(kind)  # None for a kind this version does not define
            payload_off = offset + RECORD_HEADER_LEN
            if self.stream and kind not in BULK_KINDS and length > MAX_METADATA_PAYLOAD:
                # A stream reader cannot know what remains, so it bounds metadata (§2.2).
                raise Reject("too-large", offset + 8, name, "length",
                             "%d bytes; a stream reader accepts metadata records up to %d"
                             % (length, MAX_METADATA_PAYLOAD))
            if length + CRC_LEN > size - payload_off:
                raise Reject("truncated", offset + 8, name, "length",
                             "a payload of %d bytes and its CRC run past the end of the file"
                             % length)
            crc_off = payload_off + length
            if self.check_crc:
                stored = int.from_bytes(data[crc_off:crc_off + CRC_LEN], "little")
                actual = crc32c(data[offset:crc_off])
                if stored != actual:
                    raise Reject("bad-crc", crc_off, name, "crc",
                                 "stored 0x%08x, computed 0x%08x" % (stored, actual))
            if image.record_count == 0 and kind != KIND_HEADER:
                raise Reject("orphan-record", offset, name, "kind",
                             "the first record is %s, not HEADER" % (name or "0x%04x" % kind))
            if kind not in RECORD_NAMES and rflags & 1:
                raise Reject("unknown-critical-record", offset + 2, name, "flags",
                             "unknown record kind 0x%04x has CRITICAL set" % kind)

            io.seek(offset)
            rec = None
            try:
                # Without positions (no debug mode), the constructor reads the record itself.
                rec = self.Crak.Record(io, root, root)
                root.records.append(rec)
                self.parse(rec)
            except Exception as exc:
                raise self.payload_error(exc, rec, name, payload_off)
            if io.pos() != crc_off + CRC_LEN:
                raise Reject("bad-value", payload_off, name, None,
                             "the parser read %d bytes of a %d-byte record"
                             % (io.pos() - offset, crc_off + CRC_LEN - offset))
            if kind == KIND_PAGES:
                self.check_payload_extent(rec, name, payload_off)

            # Payload bytes past the fields the parser read (§5), kept with non-default flags
            # so that the model can be written back as it was; PAGES has none.
            extra = b""
            if kind in RECORD_NAMES and kind != KIND_PAGES:
                extra = rec._raw_payload[rec.payload._io.pos():]
            if kind == KIND_END:
                self.check_end(rec.payload, offset, payload_off, image, digest)
                image.extra(kind, None, 0, rflags, extra)
                after = crc_off + CRC_LEN
                if after != size:
                    raise Reject("trailing-data", after, None, None,
                                 "%d bytes follow END" % (size - after))
                self.whole_file_parse(len(root.records))
                return image
            if kind in RECORD_NAMES:
                image.add(kind, name, rec.payload, payload_off, rflags, extra)
            else:
                image.unknown.append({"after": image.known, "kind": kind, "flags": rflags,
                                      "payload": blob(rec.payload)})
            if self.check_crc:
                digest.update(data[offset:payload_off])
                digest.update(data[crc_off:crc_off + CRC_LEN])
            image.record_count += 1
            offset = crc_off + CRC_LEN

    def payload_error(self, exc, rec, name, payload_off):
        """The Reject for an exception the generated parser raised inside a payload, located
        the way spec §2.2 asks: the record, the field and the field's offset in the file.

        A `bytes` or `list<T>` field is named after its contents and located at its length or
        count, where a reader decides whether the contents fit."""
        import kaitaistruct

        if isinstance(exc, kaitaistruct.ValidationFailedError):
            kind = "bad-value"
        elif isinstance(exc, EOFError) or "EOF" in type(exc).__name__:
            kind = "truncated"
        else:
            kind = "bad-value"
        message = "%s: %s" % (type(exc).__name__, exc)
        payload = getattr(rec, "payload", None)
        path = []
        if payload is not None and not isinstance(payload, bytes):
            path = locate_failure(payload)
        if not path:
            return Reject(kind, payload_off, name, None, message)
        obj, field, start = path[0]
        # A `bytes` or `list<T>` field is reported at its length or count when its contents run
        # past the payload or break a bound (PIPE_DATA's capacity); a bad value inside a list
        # item is reported at that item's field.
        counter = length_field(obj, field)
        if counter is not None and (kind == "truncated" or len(path) == 1):
            return Reject(kind, payload_off + field_start(obj, counter), name,
                          model_field_name(field), message)
        if kind == "truncated":
            if field == "padding":
                return Reject(kind, payload_off + field_start(obj, "data_offset"), name,
                              "data_offset", message)
        if len(path) > 1:
            # Inside a list item the field is `list.field` (`special_mappings.kind`); inside a
            # plain structure (THREAD's `gpr`) it is the inner field (`rip`), as §3 names it.
            inner_obj, inner, inner_start = path[-1]
            inner = model_field_name(inner)
            if isinstance(getattr(obj, field, None), list):
                inner = "%s.%s" % (field, inner)
            return Reject(kind, payload_off + inner_start, name, inner, message)
        return Reject(kind, payload_off + start, name, model_field_name(field), message)

    def check_payload_extent(self, rec, name, payload_off):
        """What the .ksy leaves to its user inside a payload: a PAGES record's length must be
        exactly data_offset + nr_pages * page_size (§3.11)."""
        p = rec.payload
        if rec.kind == self.Crak.RecordKind.pages and rec.length != p.data_offset + len(p.data):
            raise Reject("bad-value", payload_off + p.data_offset, name, "data",
                         "%d bytes follow the page data" %
                         (rec.length - p.data_offset - len(p.data)))

    def check_end(self, end, offset, payload_off, image, digest):
        """END's counts and digest (§2.4)."""
        if end.record_count != image.record_count:
            raise Reject("bad-end", payload_off, "END", "record_count",
                         "END counts %d records, the image has %d"
                         % (end.record_count, image.record_count))
        if end.byte_count != offset:
            raise Reject("bad-end", payload_off + 8, "END", "byte_count",
                         "END says it starts at %d, it starts at %d" % (end.byte_count, offset))
        if end.page_count != image.page_count:
            raise Reject("bad-end", payload_off + 16, "END", "page_count",
                         "END counts %d pages, the image has %d"
                         % (end.page_count, image.page_count))
        if self.check_crc and end.digest != digest.value:
            raise Reject("bad-digest", payload_off + 24, "END", "digest",
                         "stored 0x%08x, computed 0x%08x" % (end.digest, digest.value))

    def whole_file_parse(self, expected_records):
        """Parses the image again through the .ksy's top-level type, as any Kaitai user would,
        and checks it agrees on the record count."""
        top = self.Crak.from_bytes(self.data)
        self.parse(top)
        if len(top.records) != expected_records:
            raise Usage("the top-level parse found %d records, the sequential read %d"
                        % (len(top.records), expected_records))


class Image:
    """The model being assembled: records grouped by process (spec §2.3)."""

    def __init__(self, file_header):
        self.version = {"major": file_header.major, "minor": file_header.minor}
        self.flags = file_header.flags
        self.header = None
        self.processes = []
        self.by_pid = {}
        self.pipes = []
        self.notes = []
        self.ipc = {"shm_segments": [], "sem_sets": [], "msg_queues": [], "scm": []}
        self.record_count = 0
        self.page_count = 0
        self.seen_once = set()
        self.auth = None
        self.unknown = []
        self.extras = []
        self.known = 0

    def extra(self, kind, pid, index, flags, extra):
        """Keeps a record's flags and payload tail when a writer would not reproduce them."""
        if flags != default_flags(kind) or extra:
            self.extras.append({"kind": kind, "pid": pid, "index": index, "flags": flags,
                                "extra": blob(extra)})

    def add(self, kind, name, p, payload_off, flags=None, extra=b""):
        if flags is None:
            flags = default_flags(kind)
        self.known += 1
        if kind == KIND_HEADER:
            if self.header is not None:
                raise Reject("duplicate", payload_off - RECORD_HEADER_LEN, name, "kind",
                             "a second HEADER record")
            self.header = model_header(p)
            self.extra(kind, None, 0, flags, extra)
            return
        if kind == KIND_AUTH:
            if self.auth is not None:
                raise Reject("duplicate", payload_off - RECORD_HEADER_LEN, name, "kind",
                             "a second AUTH record")
            self.auth = model_auth(p)
            self.extra(kind, None, 0, flags, extra)
            return
        if kind == KIND_PROCESS:
            if p.pid in self.by_pid:
                raise Reject("duplicate", payload_off, name, "pid",
                             "a second PROCESS record for pid %d" % p.pid)
            proc = new_process(model_process(p))
            self.by_pid[p.pid] = proc
            self.processes.append(proc)
            self.extra(kind, p.pid, 0, flags, extra)
            return
        if kind == 0x000E:
            self.extra(kind, None, len(self.pipes), flags, extra)
            self.pipes.append(model_pipe_data(p))
            return
        if kind == KIND_NOTE:
            self.extra(kind, None, len(self.notes), flags, extra)
            self.notes.append(model_note(p))
            return
        if kind in IPC_KINDS:
            convert, slot = IPC_KINDS[kind]
            self.extra(kind, None, len(self.ipc[slot]), flags, extra)
            self.ipc[slot].append(convert(p))
            return
        convert, slot, once, once_per_thread = PER_PROCESS[kind]
        proc = self.by_pid.get(p.pid)
        if proc is None:
            raise Reject("orphan-record", payload_off, name, "pid",
                         "no PROCESS record precedes pid %d" % p.pid)
        index = 0 if once else len(proc[slot])
        if once:
            if proc.get(slot) is not None:
                raise Reject("duplicate", payload_off, name, "pid",
                             "a second %s record for pid %d" % (name, p.pid))
            proc[slot] = convert(p)
        elif kind == 0x000A:
            # §2.3: VMAs of a process in increasing address order; §3.10: at most 2^20.
            if proc["vmas"] and p.start <= proc["vmas"][-1]["start"]:
                raise Reject("bad-value", payload_off + 8, name, "start",
                             "VMA records of pid %d are not in increasing address order"
                             % p.pid)
            if len(proc["vmas"]) >= MAX_VMAS:
                raise Reject("bad-value", payload_off, name, "pid",
                             "pid %d has more than %d VMAs" % (p.pid, MAX_VMAS))
            proc["vmas"].append(convert(p))
        elif kind == 0x000D and len(proc["fds"]) >= MAX_FDS:
            raise Reject("bad-value", payload_off, name, "pid",
                         "pid %d has more than %d fds" % (p.pid, MAX_FDS))
        else:
            if once_per_thread:
                key = (kind, p.pid, p.tid)
                if key in self.seen_once:
                    raise Reject("duplicate", payload_off + 4, name, "tid",
                                 "a second %s record for pid %d tid %d" % (name, p.pid, p.tid))
                self.seen_once.add(key)
            proc[slot].append(convert(p))
        if kind == KIND_PAGES:
            self.page_count += p.nr_pages
        self.extra(kind, p.pid, index, flags, extra)

    def to_json(self):
        for proc in self.processes:
            for slot in OPTIONAL_SLOTS:
                if slot in proc:
                    proc[slot] = proc.pop(slot)
        out = {
            "version": self.version,
            "flags": self.flags,
            "header": self.header,
            "processes": self.processes,
            "pipes": self.pipes,
            "notes": self.notes,
        }
        # Present only when the image has them, as serde skips them otherwise.
        for slot in ("scm", "shm_segments", "sem_sets", "msg_queues"):
            if self.ipc[slot]:
                out[slot] = self.ipc[slot]
        if self.auth is not None:
            out["auth"] = self.auth
        if self.unknown:
            out["unknown"] = self.unknown
        if self.extras:
            out["extras"] = self.extras
        return out


# --------------------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", metavar="IMAGE",
                    help="crak image to read ('-' for standard input)")
    ap.add_argument("--parser-dir", help="directory holding the generated crak.py "
                    "(compiled with positions: ksc.js --debug, or --read-pos --no-auto-read)")
    ap.add_argument("--pages", action="store_true", help="print bulk data in full (base64)")
    ap.add_argument("--no-crc", action="store_true", help="skip CRC and digest checks")
    ap.add_argument("--stream", action="store_true",
                    help="apply the rules of a stream reader too (too-large, §2.2)")
    ap.add_argument("--jsonl", action="store_true",
                    help="one line per image: {\"image\": PATH, \"model\": ...} or "
                    "{\"image\": PATH, \"error\": ...}; exit 1 when any image is rejected")
    args = ap.parse_args(argv)
    if len(args.images) > 1 and not args.jsonl:
        ap.error("several images need --jsonl")
    try:
        if args.parser_dir:
            parser = load_parser(args.parser_dir)
        else:
            tmp = tempfile.mkdtemp(prefix="crak-ksy-")
            try:
                compile_parser(tmp)
                parser = load_parser(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except Usage as e:
        sys.stderr.write("ksy_dump: %s\n" % e)
        return 2
    status = 0
    try:
        for path in args.images:
            try:
                if path == "-":
                    data = sys.stdin.buffer.read()
                else:
                    with open(path, "rb") as f:
                        data = f.read()
                image = Reader(data, parser, check_crc=not args.no_crc,
                               stream=args.stream).read()
            except Reject as r:
                status = 1
                if args.jsonl:
                    out = {"image": path, "error": r.to_json()}
                else:
                    out = r.to_json()
                json.dump(out, sys.stdout)
                sys.stdout.write("\n")
                continue
            except (Usage, OSError) as e:
                sys.stderr.write("ksy_dump: %s: %s\n" % (path, e))
                return 2
            model = image.to_json()
            if not args.pages:
                model = elide(model)
            if args.jsonl:
                json.dump({"image": path, "model": model}, sys.stdout)
            else:
                # Sorted keys and raw UTF-8, 2-space indent: the text serde_json's pretty
                # printer gives, so `diff` against `crak-dump IMAGE --json` works.
                json.dump(model, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
            sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # A closed pipe is not an error (`ksy_dump.py IMAGE | head`).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
