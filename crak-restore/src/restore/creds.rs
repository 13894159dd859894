//! Credentials, set last (stage 5): every earlier stage needs crak-restore's privileges
//! (opening files, `PR_SET_MM_MAP` needs `CAP_SYS_RESOURCE`, rlimits above the hard limit),
//! so they are dropped only when nothing else needs them.
//!
//! Order inside: capability bounding set (needs `CAP_SETPCAP`), `SECBIT_KEEP_CAPS` so that the
//! uid change keeps the permitted set, groups, gids, uids (`setgroups`/`setresgid` need
//! `CAP_SETGID`, which `setresuid` to a non-root uid takes away), the effective set taken back
//! from the kept permitted set, the ambient set and the saved securebits (both need
//! capabilities), then the saved capability sets, and `no_new_privs` last.
//!
//! Two things happen much earlier, because every path the image names must be opened as the
//! image's user, not as crak-restore:
//! - [`check_allowed`] (stage 1, before anything exists): a restorer without the privilege
//!   to take on the image's credentials refuses the image, naming what it would need; an
//!   unprivileged user can restore only its own credentials, never uid 0, another user's
//!   ids or capabilities it does not hold.
//! - [`enter_fs_identity`] (first thing in the restore child, stage 2): the child's
//!   filesystem uid and gid and its supplementary groups become the image's, so the kernel
//!   checks every open, `chdir`, `chroot` and the exe link of stage 3 against the image's
//!   user. The real, effective and saved ids and the capabilities stay crak-restore's until
//!   this stage (the remote calls still need them); an fsuid other than 0 drops the file
//!   capabilities from the effective set meanwhile. [`as_restorer`] lends the restorer's
//!   identity back for the one open that is crak-restore's own: its image file.

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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
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
    read_status(&format!("/proc/{pid}/status"))
}

fn read_status(path: &str) -> Result<Current, RestoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RestoreError::failed("reading credentials", format!("{path}: {e}")))?;
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

/// `CAP_SETGID`, `CAP_SETUID`, `CAP_SETPCAP`.
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
/// Capability bits this restorer knows (0..=[`CAP_LAST`]).
const CAP_MASK: u64 = (1u64 << (CAP_LAST + 1)) - 1;

/// Conventional names of the capabilities in `mask`, e.g. `CAP_SYS_ADMIN, CAP_NET_RAW`.
pub fn cap_names(mask: u64) -> String {
    const NAMES: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    let mut out = Vec::new();
    for bit in 0..64u32 {
        if mask & (1u64 << bit) != 0 {
            out.push(
                NAMES
                    .get(bit as usize)
                    .map_or_else(|| format!("capability {bit}"), |n| (*n).to_string()),
            );
        }
    }
    out.join(", ")
}

/// Stage 1: whether crak-restore, with its own credentials, may give the restored process
/// the image's. The kernel would refuse most of it at stage 5 anyway; checking here refuses
/// before anything is created and names every credential the image claims beyond the
/// restorer's. Without `CAP_SETUID` each saved uid must be one of the restorer's; without
/// `CAP_SETGID` likewise each gid, and the groups must be the restorer's; capabilities must
/// be within the restorer's permitted set (and the ambient set within the image's own
/// permitted and inheritable sets); without `CAP_SETPCAP` the bounding set and the
/// securebits cannot change; `no_new_privs` can never be cleared.
pub fn check_allowed(cr: &Creds) -> Result<(), RestoreError> {
    let me = read_status("/proc/self/status")?;
    let my_securebits = crate::sys::fsid::securebits().unwrap_or(0);
    let need = needed_privileges(cr, &me, my_securebits);
    if need.is_empty() {
        return Ok(());
    }
    Err(RestoreError::Refused(format!(
        "the image's credentials claim what crak-restore (uid {}, gid {}) may not give: {}; \
         only root, or the image's own user with the same credentials, can restore it",
        me.uids[1],
        me.gids[1],
        need.join("; ")
    )))
}

/// What the image's credentials need beyond `me` (the restorer's), one phrase each; empty
/// when the restorer may give them.
fn needed_privileges(cr: &Creds, me: &Current, my_securebits: u32) -> Vec<String> {
    let want = wanted(cr);
    let has = |cap: u32| me.cap_eff & (1u64 << cap) != 0;
    let mut need = Vec::new();
    if !has(CAP_SETUID) {
        let names = ["uid", "euid", "suid", "fsuid"];
        for (name, u) in names.iter().zip(want.uids) {
            if !me.uids.contains(&u) {
                need.push(format!("{name} {u} (needs CAP_SETUID)"));
            }
        }
    }
    if !has(CAP_SETGID) {
        let names = ["gid", "egid", "sgid", "fsgid"];
        for (name, g) in names.iter().zip(want.gids) {
            if !me.gids.contains(&g) {
                need.push(format!("{name} {g} (needs CAP_SETGID)"));
            }
        }
        let mut mine = me.groups.clone();
        mine.sort_unstable();
        mine.dedup();
        let mut theirs = want.groups.clone();
        theirs.dedup();
        if mine != theirs {
            need.push(format!(
                "supplementary groups {theirs:?}, not {mine:?} (needs CAP_SETGID)"
            ));
        }
    }
    let extra = (want.cap_prm | want.cap_eff) & !me.cap_prm;
    if extra != 0 {
        need.push(format!("capabilities {}", cap_names(extra)));
    }
    if want.cap_eff & !want.cap_prm != 0 {
        need.push(format!(
            "effective capabilities outside its permitted set ({})",
            cap_names(want.cap_eff & !want.cap_prm)
        ));
    }
    let inh = want.cap_inh & !(me.cap_inh | me.cap_prm);
    if inh != 0 {
        need.push(format!("inheritable capabilities {}", cap_names(inh)));
    }
    let amb = want.cap_amb & !(want.cap_prm & want.cap_inh);
    if amb != 0 {
        need.push(format!(
            "ambient capabilities outside its permitted and inheritable sets ({})",
            cap_names(amb)
        ));
    }
    let bnd_added = want.cap_bnd & !me.cap_bnd & CAP_MASK;
    if bnd_added != 0 {
        need.push(format!(
            "bounding-set capabilities {} (a bounding set can only shrink)",
            cap_names(bnd_added)
        ));
    }
    if !has(CAP_SETPCAP) {
        let dropped = me.cap_bnd & !want.cap_bnd & CAP_MASK;
        if dropped != 0 {
            need.push(format!(
                "a smaller bounding set, without {} (needs CAP_SETPCAP)",
                cap_names(dropped)
            ));
        }
        if cr.securebits != my_securebits {
            need.push(format!(
                "securebits {:#x}, not {my_securebits:#x} (needs CAP_SETPCAP)",
                cr.securebits
            ));
        }
    }
    if want.nnp == 0 && me.nnp != 0 {
        need.push("no_new_privs clear, while crak-restore runs with it set".into());
    }
    need
}

/// Whether crak-restore holds `CAP_CHECKPOINT_RESTORE` or `CAP_SYS_ADMIN` (effective), which
/// `clone3` with `set_tid` and changing the exe link with `PR_SET_MM_MAP` need.
pub fn may_checkpoint_restore() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    read_status("/proc/self/status")
        .is_ok_and(|me| me.cap_eff & (1u64 << CAP_SYS_ADMIN | 1u64 << CAP_CHECKPOINT_RESTORE) != 0)
}

/// The filesystem identity of `cr`: its fsuid, fsgid and supplementary groups.
pub fn fs_identity(cr: &Creds) -> crate::sys::fsid::FsIdentity {
    let mut groups = cr.groups.clone();
    groups.sort_unstable();
    groups.dedup();
    crate::sys::fsid::FsIdentity {
        fsuid: cr.fsuid,
        fsgid: cr.fsgid,
        groups,
    }
}

/// Stage 2, first thing in the restore child: takes on the image's filesystem identity, so
/// that every path the image names (cwd, files, FIFOs, deleted files' directories, mapped
/// files and the exe in stage 3, the root) is opened with the image user's permissions.
pub fn enter_fs_identity(cr: Option<&Creds>) -> Result<(), String> {
    let cr = cr.ok_or_else(|| "the process has no CREDS record".to_string())?;
    crate::sys::fsid::enter(&fs_identity(cr)).map_err(|e| {
        format!(
            "taking on the image's filesystem identity (fsuid {}, fsgid {}): {e}",
            cr.fsuid, cr.fsgid
        )
    })
}

/// Runs `f` on the child with crak-restore's own filesystem identity (fsuid and fsgid set to
/// the child's effective ids, which are still crak-restore's in stage 3), then gives the
/// image's back: for opening crak-restore's own image file, which the image's user may not
/// be allowed to read.
pub fn as_restorer<T>(
    r: &mut Remote,
    f: impl FnOnce(&mut Remote) -> Result<T, RestoreError>,
) -> Result<T, RestoreError> {
    // setfsuid/setfsgid return the previous value and never fail.
    let (euid, egid) = (crate::sys::fsid::euid(), crate::sys::fsid::egid());
    let old_gid = r.call(
        || format!("setfsgid({egid})"),
        libc::SYS_setfsgid,
        &[u64::from(egid)],
    )?;
    let old_uid = r.call(
        || format!("setfsuid({euid})"),
        libc::SYS_setfsuid,
        &[u64::from(euid)],
    )?;
    let res = f(r);
    let back_uid = r.call(|| "setfsuid".into(), libc::SYS_setfsuid, &[old_uid]);
    let back_gid = r.call(|| "setfsgid".into(), libc::SYS_setfsgid, &[old_gid]);
    let v = res?;
    back_uid?;
    back_gid?;
    Ok(v)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32) -> Current {
        Current {
            uids: [uid; 4],
            gids: [gid; 4],
            groups: vec![gid],
            cap_bnd: CAP_MASK,
            ..Current::default()
        }
    }

    fn creds_of(c: &Current) -> Creds {
        Creds {
            pid: 1,
            uid: c.uids[0],
            euid: c.uids[1],
            suid: c.uids[2],
            fsuid: c.uids[3],
            gid: c.gids[0],
            egid: c.gids[1],
            sgid: c.gids[2],
            fsgid: c.gids[3],
            cap_inheritable: c.cap_inh,
            cap_permitted: c.cap_prm,
            cap_effective: c.cap_eff,
            cap_bounding: c.cap_bnd,
            cap_ambient: c.cap_amb,
            securebits: 0,
            no_new_privs: c.nnp,
            groups: c.groups.clone(),
        }
    }

    #[test]
    fn a_user_may_restore_its_own_credentials_only() {
        let me = user(1000, 1000);
        assert!(needed_privileges(&creds_of(&me), &me, 0).is_empty());

        let mut root = creds_of(&me);
        root.euid = 0;
        let need = needed_privileges(&root, &me, 0);
        assert_eq!(need, ["euid 0 (needs CAP_SETUID)"]);

        let mut other = creds_of(&me);
        (other.uid, other.euid, other.suid, other.fsuid) = (1001, 1001, 1001, 1001);
        other.groups = vec![1000, 27];
        let need = needed_privileges(&other, &me, 0).join("; ");
        assert!(
            need.contains("uid 1001") && need.contains("groups [27, 1000]"),
            "{need}"
        );

        let mut caps = creds_of(&me);
        caps.cap_permitted = 1 << 21;
        caps.cap_effective = 1 << 21;
        let need = needed_privileges(&caps, &me, 0).join("; ");
        assert!(need.contains("CAP_SYS_ADMIN"), "{need}");

        let mut smaller = creds_of(&me);
        smaller.cap_bounding = CAP_MASK & !(1 << 13);
        let need = needed_privileges(&smaller, &me, 0).join("; ");
        assert!(need.contains("without CAP_NET_RAW"), "{need}");

        let mut nnp = me.clone();
        nnp.nnp = 1;
        let need = needed_privileges(&creds_of(&me), &nnp, 0).join("; ");
        assert!(need.contains("no_new_privs"), "{need}");
        assert!(
            !needed_privileges(&creds_of(&me), &me, 1).is_empty(),
            "securebits"
        );
    }

    #[test]
    fn root_may_restore_any_credentials() {
        let mut root = user(0, 0);
        root.cap_prm = CAP_MASK;
        root.cap_eff = CAP_MASK;
        let mut c = creds_of(&user(1000, 1000));
        c.cap_bounding = 0;
        c.securebits = 0x2f;
        assert!(needed_privileges(&c, &root, 0).is_empty());
        c.cap_permitted = 1 << 21;
        c.cap_ambient = 1 << 21;
        let need = needed_privileges(&c, &root, 0).join("; ");
        assert!(
            need.contains("ambient"),
            "ambient outside inheritable: {need}"
        );
    }

    #[test]
    fn capability_names() {
        assert_eq!(cap_names(1 << 21 | 1), "CAP_CHOWN, CAP_SYS_ADMIN");
        assert_eq!(cap_names(1 << 50), "capability 50");
    }
}
