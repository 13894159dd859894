//! proptest strategies for every record kind and for small whole images (feature
//! `arbitrary`).
//!
//! Every record a strategy yields is within the spec's bounds and value domains, so it writes
//! and parses back unchanged. [`image`] yields images that are *structurally* valid (what the
//! parser checks: unique pids, at most one CREDS/MM/RLIMITS/SIGACTIONS per process, unique tids
//! per THREAD and XSAVE, VMAs in increasing address order, page data of `nr_pages × page_size`
//! bytes), not necessarily *semantically* valid (§4: VMAs may overlap, pages may lie outside
//! every VMA).

use crate::bytes::{Blob, ByteString};
use crate::image::{Image, Process, CURRENT_VERSION};
use crate::record::creds::Creds;
use crate::record::fd::{
    Fd, FdKind, FdState, InetAddr, TcpConn, TcpState, UdpState, AF_INET, AF_INET6, SOCKOPT_ALL,
    TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN,
};
use crate::record::header::{Header, SpecialMapping, ARCH_X86_64};
use crate::record::locks::{Lock, LockKind, LockType, Locks};
use crate::record::mm::Mm;
use crate::record::note::Note;
use crate::record::pages::{PageRun, ZeroRun};
use crate::record::pipe_data::PipeData;
use crate::record::process::{ProcessRecord, MAX_PID};
use crate::record::rlimits::{Rlimit, Rlimits};
use crate::record::sigactions::{SigAction, SigActions};
use crate::record::sigqueue::{SigQueue, SIGINFO_SIZE};
use crate::record::thread::{Gpr, Thread, ThreadExt};
use crate::record::timers::{Itimer, Notify, PosixTimer, Timers, Which};
use crate::record::vma::{Vma, VmaKind};
use crate::record::xsave::Xsave;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

/// Bytes of length `0..=max`.
pub fn byte_string(max: usize) -> impl Strategy<Value = ByteString> {
    vec(any::<u8>(), 0..=max).prop_map(ByteString)
}

/// Owned bytes of length `0..=max`.
pub fn blob(max: usize) -> impl Strategy<Value = Blob<'static>> {
    vec(any::<u8>(), 0..=max).prop_map(Blob::from)
}

/// One of the VMA kinds.
pub fn vma_kind() -> impl Strategy<Value = VmaKind> {
    (1u16..=10).prop_map(|k| VmaKind::from_u16(k).unwrap_or(VmaKind::Anon))
}

/// A HEADER with any valid page size.
pub fn header() -> impl Strategy<Value = Header> {
    prop_oneof![Just(4096u32), Just(8192), Just(16384), Just(65536)]
        .prop_flat_map(header_with_page_size)
}

/// A HEADER with the given page size.
pub fn header_with_page_size(page_size: u32) -> impl Strategy<Value = Header> {
    let special =
        (5u16..=9, any::<u64>(), any::<u64>()).prop_map(|(k, start, end)| SpecialMapping {
            kind: VmaKind::from_u16(k).unwrap_or(VmaKind::Vdso),
            start,
            end,
        });
    (
        any::<i64>(),
        any::<u64>(),
        0u32..=65536,
        byte_string(32),
        byte_string(32),
        byte_string(32),
        vec(special, 0..=3),
    )
        .prop_map(
            move |(capture_time_ns, xsave_features, xsave_size, kr, hn, tv, sm)| Header {
                arch: ARCH_X86_64,
                page_size,
                capture_time_ns,
                xsave_features,
                xsave_size,
                kernel_release: kr,
                hostname: hn,
                tool_version: tv,
                special_mappings: sm,
            },
        )
}

/// A PROCESS record with any valid pid and 1–4 tids, the first equal to the pid.
pub fn process_record() -> impl Strategy<Value = ProcessRecord> {
    (1..=MAX_PID).prop_flat_map(|pid| {
        vec(1..=MAX_PID, 0..=3).prop_flat_map(move |more| {
            let mut tids = vec![pid];
            tids.extend(more);
            process_record_with(pid, tids)
        })
    })
}

/// A PROCESS record with `pid` and `tids`.
pub fn process_record_with(pid: u32, tids: Vec<u32>) -> impl Strategy<Value = ProcessRecord> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            0u32..0o1000,
        ),
        byte_string(16),
        byte_string(40),
        byte_string(20),
        byte_string(20),
        byte_string(60),
        byte_string(60),
    )
        .prop_map(
            move |(
                (ppid, pgid, sid, personality, umask),
                comm,
                exe,
                cwd,
                root,
                cmdline,
                environ,
            )| {
                ProcessRecord {
                    pid,
                    ppid,
                    pgid,
                    sid,
                    personality,
                    umask,
                    flags: 0,
                    comm,
                    exe,
                    cwd,
                    root,
                    cmdline,
                    environ,
                    tids: tids.clone(),
                }
            },
        )
}

/// A CREDS record for `pid`.
pub fn creds(pid: u32) -> impl Strategy<Value = Creds> {
    (
        proptest::array::uniform8(any::<u32>()),
        proptest::array::uniform5(any::<u64>()),
        any::<u32>(),
        any::<bool>(),
        vec(any::<u32>(), 0..=8),
    )
        .prop_map(move |(ids, caps, securebits, nnp, groups)| {
            let [uid, euid, suid, fsuid, gid, egid, sgid, fsgid] = ids;
            let [cap_inheritable, cap_permitted, cap_effective, cap_bounding, cap_ambient] = caps;
            Creds {
                pid,
                uid,
                euid,
                suid,
                fsuid,
                gid,
                egid,
                sgid,
                fsgid,
                cap_inheritable,
                cap_permitted,
                cap_effective,
                cap_bounding,
                cap_ambient,
                securebits,
                no_new_privs: u32::from(nnp),
                groups,
            }
        })
}

/// An MM record for `pid`.
pub fn mm(pid: u32) -> impl Strategy<Value = Mm> {
    (
        proptest::array::uniform11(any::<u64>()),
        vec((any::<u64>(), any::<u64>()), 0..=8),
    )
        .prop_map(move |(v, auxv)| {
            let [start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end] =
                v;
            Mm {
                pid,
                start_code,
                end_code,
                start_data,
                end_data,
                start_brk,
                brk,
                start_stack,
                arg_start,
                arg_end,
                env_start,
                env_end,
                auxv,
            }
        })
}

/// An RLIMITS record for `pid`.
pub fn rlimits(pid: u32) -> impl Strategy<Value = Rlimits> {
    vec(
        (0u32..16, any::<u64>(), any::<u64>()).prop_map(|(resource, cur, max)| Rlimit {
            resource,
            cur,
            max,
        }),
        0..=16,
    )
    .prop_map(move |limits| Rlimits { pid, limits })
}

/// A TIMERS record (1.2) for `pid`.
pub fn timers(pid: u32) -> impl Strategy<Value = Timers> {
    let which = proptest::sample::select(vec![Which::Real, Which::Virtual, Which::Prof]);
    let notify = proptest::sample::select(vec![Notify::Signal, Notify::None, Notify::ThreadId]);
    (
        vec(
            (which, any::<u64>(), any::<u64>()).prop_map(|(which, value_ns, interval_ns)| Itimer {
                which,
                value_ns,
                interval_ns,
            }),
            0..=3,
        ),
        vec(
            (
                (any::<u32>(), any::<u32>(), notify, 1u32..=64, any::<u32>()),
                (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()),
            )
                .prop_map(
                    |(
                        (id, clockid, notify, signo, tid),
                        (overrun, sigval, value_ns, interval_ns),
                    )| {
                        PosixTimer {
                            id,
                            clockid,
                            notify,
                            signo,
                            tid,
                            overrun,
                            sigval,
                            value_ns,
                            interval_ns,
                        }
                    },
                ),
            0..=3,
        ),
    )
        .prop_map(move |(itimers, posix)| Timers {
            pid,
            itimers,
            posix,
        })
}

/// A LOCKS record (1.2) for `pid`.
pub fn locks(pid: u32) -> impl Strategy<Value = Locks> {
    let kind = proptest::sample::select(vec![LockKind::Flock, LockKind::Posix, LockKind::Ofd]);
    let ty = proptest::sample::select(vec![LockType::Read, LockType::Write]);
    vec(
        (0u32..(1 << 20), kind, ty, any::<u64>(), any::<u64>()).prop_map(
            |(fd, kind, lock_type, start, len)| Lock {
                fd,
                kind,
                lock_type,
                start,
                len,
            },
        ),
        0..=3,
    )
    .prop_map(move |locks| Locks { pid, locks })
}

/// A SIGACTIONS record for `pid`.
pub fn sigactions(pid: u32) -> impl Strategy<Value = SigActions> {
    vec(
        (
            1u32..=64,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(signo, handler, flags, restorer, mask)| SigAction {
                signo,
                handler,
                flags,
                restorer,
                mask,
            }),
        0..=8,
    )
    .prop_map(move |actions| SigActions { pid, actions })
}

/// A THREAD record for `pid`/`tid`.
pub fn thread(pid: u32, tid: u32) -> impl Strategy<Value = Thread> {
    (
        proptest::array::uniform27(any::<u64>()),
        proptest::array::uniform4(any::<u64>()),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
        ),
        proptest::option::of((any::<u64>(), any::<u64>(), byte_string(16))),
    )
        .prop_map(
            move |(
                regs,
                [blocked, pending, sas_sp, sas_size],
                (sas_flags, rseq_len, rseq_addr, rseq_sig, clear_child_tid),
                ext,
            )| Thread {
                pid,
                tid,
                gpr: Gpr::from_array(regs),
                blocked,
                pending,
                sas_sp,
                sas_size,
                sas_flags,
                rseq_len,
                rseq_addr,
                rseq_sig,
                clear_child_tid,
                ext: ext.map(|(robust_list, robust_list_len, name)| ThreadExt {
                    robust_list,
                    robust_list_len,
                    name,
                }),
            },
        )
}

/// An XSAVE record for `pid`/`tid` with an area of up to `max_area` bytes.
pub fn xsave(pid: u32, tid: u32, max_area: usize) -> impl Strategy<Value = Xsave<'static>> {
    (any::<u64>(), blob(max_area)).prop_map(move |(xstate_bv, area)| Xsave {
        pid,
        tid,
        xstate_bv,
        area,
    })
}

/// A SIGQUEUE record for `pid`/`tid` with up to 3 `siginfo_t`s.
pub fn sigqueue(pid: u32, tid: u32) -> impl Strategy<Value = SigQueue<'static>> {
    vec(vec(any::<u8>(), SIGINFO_SIZE).prop_map(Blob::from), 0..=3)
        .prop_map(move |siginfos| SigQueue { pid, tid, siginfos })
}

/// A VMA record for `pid` (any addresses; alignment and order are not this strategy's).
pub fn vma(pid: u32) -> impl Strategy<Value = Vma> {
    (
        vma_kind(),
        any::<u64>(),
        any::<u64>(),
        (
            0u32..8,
            prop_oneof![Just(1u32), Just(2), Just(0x102)],
            0u32..64,
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
        ),
        byte_string(48),
    )
        .prop_map(
            move |(
                kind,
                start,
                end,
                (prot, flags, madvise),
                (pgoff, dev, ino, size, mtime_ns),
                path,
            )| Vma {
                pid,
                kind,
                start,
                end,
                prot,
                flags,
                madvise,
                pgoff,
                dev,
                ino,
                size,
                mtime_ns,
                path,
            },
        )
}

/// A PAGES run for `pid` of 1–2 pages of `page_size` bytes.
pub fn page_run(pid: u32, page_size: u32) -> impl Strategy<Value = PageRun<'static>> {
    (any::<u64>(), 1u64..=2).prop_flat_map(move |(addr, nr_pages)| {
        let len = nr_pages as usize * page_size as usize;
        // A few distinct bytes, not a whole random page: cheap and still detects misplaced data.
        (any::<u8>(), any::<u8>(), 0..len).prop_map(move |(fill, mark, at)| {
            let mut data = vec![fill; len];
            if let Some(b) = data.get_mut(at) {
                *b = mark;
            }
            PageRun {
                pid,
                addr,
                nr_pages,
                data: data.into(),
            }
        })
    })
}

/// A ZERO_PAGES run for `pid`.
pub fn zero_run(pid: u32) -> impl Strategy<Value = ZeroRun> {
    (any::<u64>(), any::<u64>()).prop_map(move |(addr, nr_pages)| ZeroRun {
        pid,
        addr,
        nr_pages,
    })
}

/// An FD record for `pid`.
pub fn fd(pid: u32) -> impl Strategy<Value = Fd<'static>> {
    prop_oneof![6 => plain_fd(pid), 1 => unix_socket_fd(pid)]
}

/// A Unix socket's name: unnamed, a path or an abstract name.
fn unix_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        vec(1u8..=255, 1..=16).prop_map(|mut v| {
            v.insert(0, b'/');
            v
        }),
        vec(any::<u8>(), 0..=107).prop_map(|mut v| {
            v.insert(0, 0);
            v
        }),
    ]
}

/// A UNIX_SOCKET state (1.2) whose `contents` decodes, not necessarily consistent.
pub fn unix_socket() -> impl Strategy<Value = crate::record::fd::UnixSocket> {
    use crate::record::fd::{UnixMessage, UnixPending, UnixSocket};
    (
        (
            prop_oneof![Just(1u32), Just(2), Just(5)],
            0u32..=2,
            0u32..=crate::record::fd::UNIX_FLAGS_KNOWN,
            any::<u32>(),
            any::<u64>(),
        ),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        (unix_name(), unix_name()),
        vec((unix_name(), vec(any::<u8>(), 0..=16)), 0..=3),
        vec(
            (
                any::<u64>(),
                any::<u64>(),
                vec(vec(any::<u8>(), 0..=8), 0..=2),
            ),
            0..=2,
        ),
    )
        .prop_map(
            |(
                (sock_type, state, flags, backlog, peer),
                (name_uid, name_gid, name_mode),
                (name, peer_name),
                queue,
                pending,
            )| UnixSocket {
                sock_type,
                state,
                flags,
                backlog,
                peer,
                name_uid,
                name_gid,
                name_mode,
                name,
                peer_name,
                queue: queue
                    .into_iter()
                    .map(|(sender, data)| UnixMessage { sender, data })
                    .collect(),
                pending: pending
                    .into_iter()
                    .map(|(ino, client, queue)| UnixPending { ino, client, queue })
                    .collect(),
            },
        )
}

/// An FD record of kind UNIX_SOCKET with a state that decodes.
pub fn unix_socket_fd(pid: u32) -> impl Strategy<Value = Fd<'static>> {
    (0u32..(1 << 20), any::<u64>(), unix_socket()).prop_map(move |(fd, ino, s)| Fd {
        pid,
        fd,
        fd_flags: 0,
        kind: FdKind::UnixSocket,
        open_flags: 0o2,
        pos: 0,
        dev: 0,
        ino,
        rdev: 0,
        size: 0,
        mtime_ns: 0,
        mode: 0o140777,
        deleted: false,
        path: ByteString(format!("socket:[{ino}]").into_bytes()),
        contents: Blob::from(crate::record::fd::FdState::UnixSocket(s).encode()),
        description: 0,
    })
}

/// An FD record of kinds 1–5.
fn plain_fd(pid: u32) -> impl Strategy<Value = Fd<'static>> {
    (
        (
            0u32..(1 << 20),
            0u32..2,
            proptest::sample::select(vec![1u16, 2, 3, 4, 5, 15, 16]),
            any::<u32>(),
        ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (any::<i64>(), any::<u32>(), any::<bool>()),
        byte_string(48),
        blob(48),
    )
        .prop_map(
            move |(
                (fd, fd_flags, k, open_flags),
                (pos, dev, ino, rdev, size),
                (mtime_ns, mode, deleted),
                path,
                contents,
            )| Fd {
                pid,
                fd,
                fd_flags,
                kind: FdKind::from_u16(k).unwrap_or(FdKind::Reg),
                open_flags,
                pos,
                dev,
                ino,
                rdev,
                size,
                mtime_ns,
                mode,
                deleted,
                path,
                contents,
                description: 0,
            },
        )
}

/// Endpoints of a TCP or UDP state (§3.13, 1.2): IPv4 addresses with their 12 zero bytes.
pub fn inet_addr() -> impl Strategy<Value = InetAddr> {
    (
        prop_oneof![Just(AF_INET), Just(AF_INET6)],
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(family, mut local, mut remote, local_port, remote_port)| {
            if family == AF_INET {
                local[4..].fill(0);
                remote[4..].fill(0);
            }
            InetAddr {
                family,
                local,
                remote,
                local_port,
                remote_port,
            }
        })
}

/// The state of a TCP or UDP fd (kind and decodable `contents`, 1.2).
pub fn inet_state() -> impl Strategy<Value = (FdKind, FdState)> {
    let tcp = (
        inet_addr(),
        prop_oneof![Just(TCP_ESTABLISHED), Just(TCP_CLOSE), Just(TCP_LISTEN)],
        0..=SOCKOPT_ALL,
        any::<[u32; 7]>(),
        (any::<[u32; 10]>(), any::<[u8; 3]>()),
        (vec(any::<u8>(), 0..64), vec(any::<u8>(), 0..64), any::<u32>()),
    )
        .prop_map(|(addr, state, sockopts, o, (c, w), (send_queue, recv_queue, u))| {
            let unsent = if send_queue.is_empty() {
                0
            } else {
                u % (send_queue.len() as u32 + 1)
            };
            let [keepidle, keepintvl, keepcnt, rcvbuf, sndbuf, backlog, _] = o;
            let [snd_seq, rcv_seq, mss, timestamp, snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup, _] =
                c;
            (
                FdKind::Tcp,
                FdState::Tcp(Box::new(TcpState {
                    addr,
                    state,
                    sockopts,
                    keepidle,
                    keepintvl,
                    keepcnt,
                    rcvbuf,
                    sndbuf,
                    backlog,
                    conn: TcpConn {
                        snd_seq,
                        rcv_seq,
                        mss,
                        snd_wscale: w[0],
                        rcv_wscale: w[1],
                        options: w[2],
                        timestamp,
                        snd_wl1,
                        snd_wnd,
                        max_window,
                        rcv_wnd,
                        rcv_wup,
                        unsent,
                        send_queue,
                        recv_queue,
                    },
                })),
            )
        });
    let udp = (inet_addr(), 0..=SOCKOPT_ALL, any::<[u32; 3]>()).prop_map(|(addr, sockopts, v)| {
        (
            FdKind::Udp,
            FdState::Udp(UdpState {
                addr,
                sockopts,
                rcvbuf: v[0],
                sndbuf: v[1],
                dropped: v[2],
            }),
        )
    });
    prop_oneof![tcp, udp]
}

/// A PIPE_DATA record.
pub fn pipe_data() -> impl Strategy<Value = PipeData<'static>> {
    (any::<u64>(), blob(64), 0u32..70000).prop_map(|(pipe_id, data, extra)| PipeData {
        pipe_id,
        capacity: (data.len() as u32).saturating_add(extra),
        data,
    })
}

/// The id and permissions of a System V IPC object.
pub fn ipc_perm() -> impl Strategy<Value = crate::record::ipc::IpcPerm> {
    (
        0u32..=i32::MAX as u32,
        any::<u32>(),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        0u32..0o4000,
    )
        .prop_map(
            |(id, key, (uid, gid, cuid, cgid), mode)| crate::record::ipc::IpcPerm {
                id,
                key,
                uid,
                gid,
                cuid,
                cgid,
                mode,
            },
        )
}

/// An SHM record.
pub fn shm() -> impl Strategy<Value = crate::record::shm::Shm<'static>> {
    (
        ipc_perm(),
        blob(64),
        0u64..70000,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(perm, data, extra, cpid, lpid)| crate::record::shm::Shm {
            perm,
            size: (data.len() as u64 + extra).max(1),
            cpid,
            lpid,
            data,
        })
}

/// A SEM record.
pub fn sem_set() -> impl Strategy<Value = crate::record::sem::SemSet> {
    (
        ipc_perm(),
        vec(
            (0u32..=crate::record::sem::SEMVMX, any::<u32>())
                .prop_map(|(value, pid)| crate::record::sem::Sem { value, pid }),
            1..=4,
        ),
    )
        .prop_map(|(perm, sems)| crate::record::sem::SemSet { perm, sems })
}

/// A MSG record.
pub fn msg_queue() -> impl Strategy<Value = crate::record::msg::MsgQueue<'static>> {
    (
        ipc_perm(),
        vec(
            (1i64..=i64::MAX, blob(32))
                .prop_map(|(mtype, text)| crate::record::msg::Message { mtype, text }),
            0..=3,
        ),
        0u64..70000,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(perm, messages, extra, lspid, lrpid)| {
            let mut q = crate::record::msg::MsgQueue {
                perm,
                qbytes: extra,
                lspid,
                lrpid,
                messages,
            };
            q.qbytes = q.cbytes().saturating_add(extra);
            q
        })
}

/// An SCM record (1.3): structurally valid, its socket and message index arbitrary; each
/// file is an FD layout with `pid` 0, `fd` its position and `fd_flags` 0.
pub fn scm() -> impl Strategy<Value = crate::record::scm::Scm<'static>> {
    (
        any::<u64>(),
        0u32..=4,
        any::<bool>(),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        vec(fd(0), 0..=3),
    )
        .prop_map(|(socket, message, creds, (pid, uid, gid), files)| {
            let files = files
                .into_iter()
                .enumerate()
                .map(|(i, f)| Fd {
                    pid: 0,
                    fd: i as u32,
                    fd_flags: 0,
                    ..f
                })
                .collect();
            crate::record::scm::Scm {
                socket,
                message,
                flags: u32::from(creds),
                pid: if creds { pid } else { 0 },
                uid: if creds { uid } else { 0 },
                gid: if creds { gid } else { 0 },
                files,
            }
        })
}

/// A NOTE record.
pub fn note() -> impl Strategy<Value = Note> {
    (byte_string(32), byte_string(64)).prop_map(|(key, value)| Note { key, value })
}

/// A process for `pid` with every kind of record, structurally valid.
pub fn process(pid: u32, page_size: u32) -> impl Strategy<Value = Process<'static>> {
    btree_set(1..=MAX_PID, 0..=2).prop_flat_map(move |others| {
        let mut tids = vec![pid];
        tids.extend(others.into_iter().filter(|t| *t != pid));
        let threads: Vec<_> = tids.iter().map(|&t| thread(pid, t)).collect();
        let xsaves: Vec<_> = tids.iter().map(|&t| xsave(pid, t, 64)).collect();
        (
            process_record_with(pid, tids.clone()),
            (
                proptest::option::of(creds(pid)),
                proptest::option::of(mm(pid)),
                proptest::option::of(rlimits(pid)),
                proptest::option::of(sigactions(pid)),
            ),
            (
                proptest::option::of(timers(pid)),
                proptest::option::of(locks(pid)),
            ),
            threads,
            xsaves,
            vec(sigqueue(pid, 0), 0..=1),
            vec(fd(pid), 0..=3),
            vec(vma(pid), 0..=4),
            vec(page_run(pid, page_size), 0..=3),
            vec(zero_run(pid), 0..=2),
        )
            .prop_map(
                move |(
                    process,
                    (creds, mm, rlimits, sigactions),
                    (timers, locks),
                    threads,
                    xsaves,
                    sigqueues,
                    fds,
                    mut vmas,
                    pages,
                    zero_runs,
                )| {
                    vmas.sort_by_key(|v| v.start);
                    vmas.dedup_by_key(|v| v.start);
                    Process {
                        process,
                        creds,
                        mm,
                        rlimits,
                        sigactions,
                        threads,
                        xsaves,
                        sigqueues,
                        fds,
                        vmas,
                        pages,
                        zero_runs,
                        timers,
                        locks,
                    }
                },
            )
    })
}

/// A small, structurally valid image of version 1.0 with 4096-byte pages and 1–3 processes.
pub fn image() -> impl Strategy<Value = Image<'static>> {
    const PAGE: u32 = 4096;
    btree_set(1..=MAX_PID, 1..=3).prop_flat_map(|pids| {
        let procs: Vec<_> = pids.into_iter().map(|pid| process(pid, PAGE)).collect();
        (
            header_with_page_size(PAGE),
            procs,
            vec(pipe_data(), 0..=2),
            vec(note(), 0..=2),
            vec(scm(), 0..=1),
            (
                vec(shm(), 0..=1),
                vec(sem_set(), 0..=1),
                vec(msg_queue(), 0..=1),
            ),
        )
            .prop_map(
                |(header, processes, pipes, notes, scm, (shm_segments, sem_sets, msg_queues))| {
                    Image {
                        version: CURRENT_VERSION,
                        flags: 0,
                        header,
                        processes,
                        pipes,
                        notes,
                        scm,
                        shm_segments,
                        sem_sets,
                        msg_queues,
                        auth: None,
                        unknown: Vec::new(),
                        extras: Vec::new(),
                    }
                },
            )
    })
}
