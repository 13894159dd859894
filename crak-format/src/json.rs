//! The JSON form of an [`Image`]: the serde form of the model.
//!
//! # Shape
//!
//! An object with the fields of [`Image`]: `version` (`{"major", "minor"}`), `flags`, `header`,
//! `processes` (each with `process`, `creds`, `mm`, `rlimits`, `sigactions` — `null` when
//! absent — and the lists `threads`, `xsaves`, `sigqueues`, `fds`, `vmas`, `pages`,
//! `zero_runs`), `pipes` and `notes`, then, only when the image has them, `shm_segments`,
//! `sem_sets` and `msg_queues` (SHM, SEM and MSG records, format 1.2), `scm` (SCM records,
//! format 1.3), `auth` (the AUTH
//! record; `key_id`, `signature` and each entry's `sha256` in hex), `unknown` (records of kinds
//! this version does not define: `after`, `kind`, `flags`, `payload`) and `extras` (known
//! records' non-default `flags` and payload bytes past the known fields: `kind`, `pid`,
//! `index`, `flags`, `extra`), which let [`from_json`] and the writer give back the same bytes.
//! Every record is an object whose keys are the model's
//! field names; enums are snake_case strings (`"vdso"`, `"reg"`); `auxv` entries are
//! `[key, value]` pairs; a thread's `gpr` is an object keyed by register name.
//!
//! Raw text ([`crate::ByteString`]) is a JSON string when it is UTF-8 and `{"hex": "..."}`
//! otherwise. Binary blobs ([`crate::Blob`]) are standard base64 with padding.
//!
//! With `include_pages = false` ([`to_json`]) each blob is replaced by its length in bytes, a
//! JSON number, in place: `pages[].data`, `xsaves[].area`, `fds[].contents`, `pipes[].data`,
//! `scm[].files[].contents`, `unknown[].payload`, `extras[].extra` and each element of `sigqueues[].siginfos`. That form is for reading, not for
//! [`from_json`], which needs the full form and rejects a number where a blob belongs.
//!
//! [`from_json`] of [`to_json`]`(image, true)` gives back `image` exactly.

use crate::bytes::Blob;
use crate::image::{Image, Process};
use serde_json::Value;

/// The JSON form of `image` (see the module documentation for the shape). With
/// `include_pages = false` every blob (page data, XSAVE areas, siginfos, file contents, pipe
/// data) is replaced by its length, and no blob is base64-encoded.
pub fn to_json(image: &Image<'_>, include_pages: bool) -> Value {
    if include_pages {
        // Serializing the model cannot fail: every map key is a string.
        return serde_json::to_value(image).unwrap_or(Value::Null);
    }
    let stripped = Image {
        version: image.version,
        flags: image.flags,
        header: image.header.clone(),
        processes: image.processes.iter().map(strip_process).collect(),
        pipes: image
            .pipes
            .iter()
            .map(|p| crate::record::pipe_data::PipeData {
                pipe_id: p.pipe_id,
                capacity: p.capacity,
                data: Blob::default(),
            })
            .collect(),
        notes: image.notes.clone(),
        scm: image
            .scm
            .iter()
            .map(|x| crate::record::scm::Scm {
                files: x
                    .files
                    .iter()
                    .map(|f| crate::record::fd::Fd {
                        contents: Blob::default(),
                        ..f.clone()
                    })
                    .collect(),
                ..x.clone()
            })
            .collect(),
        shm_segments: image
            .shm_segments
            .iter()
            .map(|x| crate::record::shm::Shm {
                data: Blob::default(),
                ..x.clone()
            })
            .collect(),
        sem_sets: image.sem_sets.clone(),
        msg_queues: image
            .msg_queues
            .iter()
            .map(|q| crate::record::msg::MsgQueue {
                perm: q.perm.clone(),
                qbytes: q.qbytes,
                lspid: q.lspid,
                lrpid: q.lrpid,
                messages: q
                    .messages
                    .iter()
                    .map(|m| crate::record::msg::Message {
                        mtype: m.mtype,
                        text: Blob::default(),
                    })
                    .collect(),
            })
            .collect(),
        auth: image.auth.clone(),
        unknown: image
            .unknown
            .iter()
            .map(|u| crate::image::UnknownRecord {
                payload: Blob::default(),
                ..u.clone()
            })
            .collect(),
        extras: image
            .extras
            .iter()
            .map(|x| crate::image::RecordExtra {
                extra: Blob::default(),
                ..x.clone()
            })
            .collect(),
    };
    let mut v = serde_json::to_value(&stripped).unwrap_or(Value::Null);
    let len = |b: &Blob<'_>| Value::from(b.len());
    if let Some(procs) = v.get_mut("processes").and_then(Value::as_array_mut) {
        for (jp, p) in procs.iter_mut().zip(&image.processes) {
            set_each(jp, "pages", "data", p.pages.iter().map(|r| len(&r.data)));
            set_each(jp, "xsaves", "area", p.xsaves.iter().map(|x| len(&x.area)));
            set_each(
                jp,
                "fds",
                "contents",
                p.fds.iter().map(|f| len(&f.contents)),
            );
            set_each(
                jp,
                "sigqueues",
                "siginfos",
                p.sigqueues
                    .iter()
                    .map(|q| Value::Array(q.siginfos.iter().map(len).collect())),
            );
        }
    }
    set_each(
        &mut v,
        "pipes",
        "data",
        image.pipes.iter().map(|p| len(&p.data)),
    );
    set_each(
        &mut v,
        "shm_segments",
        "data",
        image.shm_segments.iter().map(|x| len(&x.data)),
    );
    if let Some(scm) = v.get_mut("scm").and_then(Value::as_array_mut) {
        for (js, x) in scm.iter_mut().zip(&image.scm) {
            set_each(
                js,
                "files",
                "contents",
                x.files.iter().map(|f| len(&f.contents)),
            );
        }
    }
    if let Some(queues) = v.get_mut("msg_queues").and_then(Value::as_array_mut) {
        for (jq, q) in queues.iter_mut().zip(&image.msg_queues) {
            set_each(
                jq,
                "messages",
                "text",
                q.messages.iter().map(|m| len(&m.text)),
            );
        }
    }
    set_each(
        &mut v,
        "unknown",
        "payload",
        image.unknown.iter().map(|u| len(&u.payload)),
    );
    set_each(
        &mut v,
        "extras",
        "extra",
        image.extras.iter().map(|x| len(&x.extra)),
    );
    v
}

/// Sets `obj[list][i][field]` to the i-th value.
fn set_each(obj: &mut Value, list: &str, field: &str, values: impl Iterator<Item = Value>) {
    let Some(items) = obj.get_mut(list).and_then(Value::as_array_mut) else {
        return;
    };
    for (item, value) in items.iter_mut().zip(values) {
        if let Some(m) = item.as_object_mut() {
            m.insert(field.to_string(), value);
        }
    }
}

/// A copy of `p` whose blobs are empty (siginfos keep their count).
fn strip_process<'a>(p: &Process<'_>) -> Process<'a> {
    Process {
        process: p.process.clone(),
        creds: p.creds.clone(),
        mm: p.mm.clone(),
        rlimits: p.rlimits.clone(),
        sigactions: p.sigactions.clone(),
        threads: p.threads.clone(),
        xsaves: p
            .xsaves
            .iter()
            .map(|x| crate::record::xsave::Xsave {
                pid: x.pid,
                tid: x.tid,
                xstate_bv: x.xstate_bv,
                area: Blob::default(),
            })
            .collect(),
        sigqueues: p
            .sigqueues
            .iter()
            .map(|q| crate::record::sigqueue::SigQueue {
                pid: q.pid,
                tid: q.tid,
                siginfos: vec![Blob::default(); q.siginfos.len()],
            })
            .collect(),
        fds: p
            .fds
            .iter()
            .map(|f| crate::record::fd::Fd {
                pid: f.pid,
                fd: f.fd,
                fd_flags: f.fd_flags,
                kind: f.kind,
                open_flags: f.open_flags,
                pos: f.pos,
                dev: f.dev,
                ino: f.ino,
                rdev: f.rdev,
                size: f.size,
                mtime_ns: f.mtime_ns,
                mode: f.mode,
                deleted: f.deleted,
                path: f.path.clone(),
                contents: Blob::default(),
                description: f.description,
            })
            .collect(),
        vmas: p.vmas.clone(),
        pages: p
            .pages
            .iter()
            .map(|r| crate::record::pages::PageRun {
                pid: r.pid,
                addr: r.addr,
                nr_pages: r.nr_pages,
                data: Blob::default(),
            })
            .collect(),
        zero_runs: p.zero_runs.clone(),
        timers: p.timers.clone(),
        locks: p.locks.clone(),
    }
}

/// Reads the full JSON form (as [`to_json`]`(image, true)` writes it) back into an owned
/// image. The result is not checked against the spec's bounds; [`crate::write::write_image`]
/// checks them when it is written.
pub fn from_json(s: &str) -> Result<Image<'static>, serde_json::Error> {
    serde_json::from_str(s)
}

/// [`from_json`] from a [`Value`].
pub fn from_json_value(v: Value) -> Result<Image<'static>, serde_json::Error> {
    serde_json::from_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn full_form_round_trips(img in crate::arbitrary::image()) {
            let text = to_json(&img, true).to_string();
            let back = from_json(&text).unwrap();
            prop_assert_eq!(back, img);
        }

        #[test]
        fn elided_form_holds_lengths_and_no_base64(img in crate::arbitrary::image()) {
            let v = to_json(&img, false);
            for (jp, p) in v["processes"].as_array().unwrap().iter().zip(&img.processes) {
                for (jr, r) in jp["pages"].as_array().unwrap().iter().zip(&p.pages) {
                    prop_assert_eq!(jr["data"].as_u64(), Some(r.data.len() as u64));
                    prop_assert_eq!(jr["nr_pages"].as_u64(), Some(r.nr_pages));
                }
                for (jq, q) in jp["sigqueues"].as_array().unwrap().iter().zip(&p.sigqueues) {
                    prop_assert_eq!(jq["siginfos"].as_array().unwrap().len(), q.siginfos.len());
                }
            }
            // Everything but the blobs is as in the full form.
            let mut full = to_json(&img, true);
            let mut elided = v.clone();
            for w in [&mut full, &mut elided] {
                for p in w["processes"].as_array_mut().unwrap() {
                    for (list, field) in [("pages", "data"), ("xsaves", "area"), ("fds", "contents"), ("sigqueues", "siginfos")] {
                        for item in p[list].as_array_mut().unwrap() {
                            item[field] = Value::Null;
                        }
                    }
                }
                for item in w["pipes"].as_array_mut().unwrap() {
                    item["data"] = Value::Null;
                }
                if let Some(segments) = w.get_mut("shm_segments").and_then(Value::as_array_mut) {
                    for item in segments {
                        item["data"] = Value::Null;
                    }
                }
                if let Some(scm) = w.get_mut("scm").and_then(Value::as_array_mut) {
                    for x in scm {
                        for f in x["files"].as_array_mut().unwrap() {
                            f["contents"] = Value::Null;
                        }
                    }
                }
                if let Some(queues) = w.get_mut("msg_queues").and_then(Value::as_array_mut) {
                    for q in queues {
                        for m in q["messages"].as_array_mut().unwrap() {
                            m["text"] = Value::Null;
                        }
                    }
                }
            }
            prop_assert_eq!(full, elided);
            if img.processes.iter().any(|p| !p.pages.is_empty()) {
                prop_assert!(from_json_value(v).is_err());
            }
        }
    }

    #[test]
    fn non_utf8_text_uses_hex() {
        let mut img = Image::new(crate::record::header::Header {
            arch: 62,
            page_size: 4096,
            capture_time_ns: 0,
            xsave_features: 0,
            xsave_size: 0,
            kernel_release: crate::ByteString(vec![0xff, 0x41]),
            hostname: "h".into(),
            tool_version: "t".into(),
            special_mappings: vec![],
        });
        img.notes.push(crate::record::note::Note {
            key: "k".into(),
            value: "v".into(),
        });
        let v = to_json(&img, true);
        assert_eq!(v["header"]["kernel_release"]["hex"], "ff41");
        assert_eq!(from_json(&v.to_string()).unwrap(), img);
    }
}
