//! Credentials, set last (stage 5): every earlier stage needs crak-restore's privileges
//! (opening files, `PR_SET_MM_MAP` needs `CAP_SYS_RESOURCE`, rlimits above the hard limit),
//! so they are dropped only when nothing else needs them.
//!
//! Order inside: capability bounding set (needs `CAP_SETPCAP`), `SECBIT_KEEP_CAPS` so that the
//! uid change keeps the permitted set, groups, gids, uids (`setgroups`/`setresgid` need
//! `CAP_SETGID`, which `setresuid` to a non-root uid takes away), the effective set taken back
//! from the kept permitted set, the ambient set and the saved securebits (both need
//! capabilities), then the saved capability sets, and `no_new_privs` last.

use super::mm::Remote;
use super::RestoreError;
use crak_format::record::creds::Creds;

const PR_CAPBSET_DROP: u64 = 24;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;
const SECBIT_KEEP_CAPS: u64 = 1 << 4;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number this restorer knows (`CAP_CHECKPOINT_RESTORE`).
const CAP_LAST: u32 = 40;

/// The child's current credentials, from `/proc/PID/status`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Current {
    uids: [u32; 4],
    gids: [u32; 4],
    groups: Vec<u32>,
    cap_inh: u64,
    cap_prm: u64,
    cap_eff: u64,
    cap_bnd: u64,
    cap_amb: u64,
    nnp: u32,
}

fn read_current(pid: i32) -> Result<Current, RestoreError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| RestoreError::failed("reading credentials", e.to_string()))?;
    let mut c = Current::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let nums = || v.split_whitespace().filter_map(|x| x.parse::<u32>().ok());
        let hex = || u64::from_str_radix(v.trim(), 16).unwrap_or(0);
        match k {
            "Uid" => nums().take(4).enumerate().for_each(|(i, x)| c.uids[i] = x),
            "Gid" => nums().take(4).enumerate().for_each(|(i, x)| c.gids[i] = x),
            "Groups" => c.groups = nums().collect(),
            "CapInh" => c.cap_inh = hex(),
            "CapPrm" => c.cap_prm = hex(),
            "CapEff" => c.cap_eff = hex(),
            "CapBnd" => c.cap_bnd = hex(),
            "CapAmb" => c.cap_amb = hex(),
            "NoNewPrivs" => c.nnp = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(c)
}

fn wanted(cr: &Creds) -> Current {
    let mut groups = cr.groups.clone();
    groups.sort_unstable();
    Current {
        uids: [cr.uid, cr.euid, cr.suid, cr.fsuid],
        gids: [cr.gid, cr.egid, cr.sgid, cr.fsgid],
        groups,
        cap_inh: cr.cap_inheritable,
        cap_prm: cr.cap_permitted,
        cap_eff: cr.cap_effective,
        cap_bnd: cr.cap_bounding,
        cap_amb: cr.cap_ambient,
        nnp: cr.no_new_privs,
    }
}

/// `capset(2)` in the child: header `{version 3, pid 0}`, then two data words
/// `{effective, permitted, inheritable}` (low and high 32 bits).
fn capset(r: &mut Remote, eff: u64, prm: u64, inh: u64) -> Result<(), RestoreError> {
    let mut buf = Vec::with_capacity(8 + 24);
    buf.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    for half in [0u32, 32] {
        for set in [eff, prm, inh] {
            buf.extend_from_slice(&((set >> half) as u32).to_le_bytes());
        }
    }
    let hdr = r.put(0, &buf)?;
    r.call(
        || format!("capset(eff {eff:#x}, prm {prm:#x}, inh {inh:#x})"),
        libc::SYS_capset,
        &[hdr, hdr + 8],
    )
    .map(drop)
}

/// Gives the child the saved credentials. Does nothing when they already are the child's
/// (the usual case of a process restored by the user who ran it).
pub fn restore_creds(r: &mut Remote, cr: &Creds) -> Result<(), RestoreError> {
    let mut cur = read_current(r.pid)?;
    cur.groups.sort_unstable();
    let want = wanted(cr);
    if cur == want {
        return Ok(());
    }
    let pid = r.pid;
    // Bounding set: drop what the image lacks.
    for cap in 0..=CAP_LAST {
        let bit = 1u64 << cap;
        if cur.cap_bnd & bit != 0 && want.cap_bnd & bit == 0 {
            r.call(
                || format!("prctl(PR_CAPBSET_DROP, {cap})"),
                libc::SYS_prctl,
                &[PR_CAPBSET_DROP, u64::from(cap)],
            )?;
        }
    }
    let ids_change = cur.uids != want.uids || cur.gids != want.gids || cur.groups != want.groups;
    if ids_change {
        r.call(
            || "prctl(PR_SET_SECUREBITS, KEEP_CAPS)".into(),
            libc::SYS_prctl,
            &[
                crate::sys::prctl::PR_SET_SECUREBITS,
                u64::from(cr.securebits) | SECBIT_KEEP_CAPS,
            ],
        )?;
        let mut g = Vec::with_capacity(cr.groups.len() * 4);
        for x in &cr.groups {
            g.extend_from_slice(&x.to_le_bytes());
        }
        if g.len() > 12 * 4096 {
            return Err(RestoreError::Refused(format!(
                "process {pid} has {} supplementary groups, more than this restorer passes",
                cr.groups.len()
            )));
        }
        let a = r.put(0, &g)?;
        r.call(
            || "setgroups".into(),
            libc::SYS_setgroups,
            &[cr.groups.len() as u64, a],
        )?;
        r.call(
            || format!("setresgid({}, {}, {})", cr.gid, cr.egid, cr.sgid),
            libc::SYS_setresgid,
            &[u64::from(cr.gid), u64::from(cr.egid), u64::from(cr.sgid)],
        )?;
        r.call(
            || "setfsgid".into(),
            libc::SYS_setfsgid,
            &[u64::from(cr.fsgid)],
        )?;
        r.call(
            || format!("setresuid({}, {}, {})", cr.uid, cr.euid, cr.suid),
            libc::SYS_setresuid,
            &[u64::from(cr.uid), u64::from(cr.euid), u64::from(cr.suid)],
        )?;
        r.call(
            || "setfsuid".into(),
            libc::SYS_setfsuid,
            &[u64::from(cr.fsuid)],
        )?;
    }
    // The uid change cleared the effective set (KEEP_CAPS kept the permitted one): take the
    // effective set back, so that the ambient set and the securebits can still be set.
    capset(r, cur.cap_prm, cur.cap_prm, cr.cap_inheritable)?;
    r.call(
        || "prctl(PR_CAP_AMBIENT_CLEAR_ALL)".into(),
        libc::SYS_prctl,
        &[PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0],
    )?;
    for cap in 0..=CAP_LAST {
        if cr.cap_ambient & (1u64 << cap) != 0 {
            r.call(
                || format!("prctl(PR_CAP_AMBIENT_RAISE, {cap})"),
                libc::SYS_prctl,
                &[PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, u64::from(cap), 0, 0],
            )?;
        }
    }
    r.call(
        || format!("prctl(PR_SET_SECUREBITS, {:#x})", cr.securebits),
        libc::SYS_prctl,
        &[
            crate::sys::prctl::PR_SET_SECUREBITS,
            u64::from(cr.securebits),
        ],
    )?;
    // Last: the saved sets, which may drop the capabilities used above.
    capset(r, cr.cap_effective, cr.cap_permitted, cr.cap_inheritable)?;
    if cr.no_new_privs != 0 {
        r.call(
            || "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            libc::SYS_prctl,
            &[crate::sys::prctl::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0],
        )?;
    }
    Ok(())
}
