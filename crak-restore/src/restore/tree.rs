//! Process trees: an image with several processes is restored as the same tree, with the same
//! PIDs, each process a child of its saved parent.
//!
//! The root is created by crak-restore ([`super::fork`]); every other process is created by its
//! own parent, inside the parent's restore child code, right after the parent set up its files
//! and signals and before it stops: so `getppid()`, `wait()` and the inherited descriptors are
//! the real ones. A child sets up its own state the same way, creates its own children, and then
//! waits for crak-restore to seize it (it never stops itself: a stop would be reported to its
//! parent, which is the restored program).
//!
//! Pipes, Unix socket pairs and open file descriptions held by more than one process are created
//! once, by the root,
//! before any other process exists ("the pool", above every descriptor number the image uses),
//! filled with their saved contents, and inherited down the tree: each process puts the ends it
//! had at their numbers and closes the rest, so every holder shares the one pipe or socket (and
//! each end's open file description) as before the capture.
//!
//! Process groups and sessions: a process that led its session calls `setsid`; one whose group
//! is led by a process of the tree joins that group (its parent moves it there right after
//! creating it, as a shell does, and it does so itself too, so that neither order can race);
//! otherwise it stays in its parent's group.
//!
//! PIDs: every process asks for its saved PID (`clone3` `set_tid`). With `--new-pid`, a process
//! whose PID is taken gets whatever PID the kernel gives, and so may the zombies; the tree keeps
//! its shape, and a group or session is the one of the same process of the tree under its new
//! PID. The new PIDs are published in a table of shared memory made before the root is created
//! ([`Family::pids`]): each process writes its own slot first thing, its parent writes it too
//! right after creating it, and a process that must join a group led by another reads the
//! leader's slot (waiting briefly if neither has written it yet). crak-restore reads the table to
//! seize the processes.

use super::mm::SharedAnon;
use super::plan::{self, Options, Plan, PAGE, TRAMPOLINE_LEN};
use super::RestoreError;
use crate::sys::fdops;
use crate::sys::ptrace::{self, WaitStatus};
use crate::sys::slots::Slots;
use crak_format::record::fd::{Fd, FdKind, FD_CLOEXEC};
use crak_format::record::vma::{VmaKind, MAP_SHARED};
use crak_format::{Image, Process};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// One process to restore and its plan.
pub struct Member<'a> {
    /// Its records.
    pub proc: &'a Process<'a>,
    /// Its plan (addresses, PID).
    pub plan: Plan,
}

/// The processes of an image in creation order (the root first, every parent before its
/// children) with what they share.
pub struct Family<'a> {
    /// The processes.
    pub members: Vec<Member<'a>>,
    /// Inodes of the pipes held by more than one process.
    pub shared_pipes: Vec<u64>,
    /// Connected Unix socket pairs with ends in more than one process: (end, other end).
    pub shared_socks: Vec<(u64, u64)>,
    /// Groups of UNIX_SOCKET inodes held by more than one process, made by the root
    /// ([`super::unix_socket`]).
    pub shared_unix: Vec<Vec<u64>>,
    /// Open file descriptions (FD `description`) held by more than one process.
    pub shared_descs: Vec<u32>,
    /// Lowest descriptor number of the pool (above every number the image uses).
    pub pool_base: i32,
    /// Anonymous memory shared by several processes, and where the root maps it.
    pub shared_anon: Vec<SharedAnon>,
    /// Zombies: each is created by its parent and ends at once with its wait status.
    pub zombies: Vec<Zombie<'a>>,
    /// The live PID of every member, then of every zombie, in that order; `None` for a single
    /// process, which crak-restore creates itself.
    pub pids: Option<Slots>,
    /// `--external-pipe`: (pipe inode, whether the image holds its write end, fd number).
    pub externals: Vec<(u64, bool, i32)>,
}

/// A zombie of the image and the PID it asks for (`None`: any, with `--new-pid`).
pub struct Zombie<'a> {
    /// Its records.
    pub proc: &'a Process<'a>,
    /// `set_tid` for its `clone3`.
    pub want_pid: Option<i32>,
}

/// Checks the image and plans every process; see the module documentation.
pub fn family<'a>(image: &'a Image<'_>, options: &Options) -> Result<Family<'a>, RestoreError> {
    if image.processes.len() <= 1 {
        let proc = plan::check_image(image)?;
        let plan = plan::make_plan(image, proc, options)?;
        super::scm::check(image, &[], &[])?;
        return Ok(Family {
            members: vec![Member { proc, plan }],
            shared_pipes: Vec::new(),
            shared_socks: Vec::new(),
            shared_unix: Vec::new(),
            shared_descs: Vec::new(),
            pool_base: 0,
            shared_anon: Vec::new(),
            zombies: Vec::new(),
            pids: None,
            externals: external_pipes(image, options)?,
        });
    }
    let report = crak_format::validate::validate_metadata(image, None);
    if let Some(f) = report.errors().next() {
        return Err(RestoreError::Invalid(format!(
            "{f} ({} error{} in total)",
            report.errors,
            if report.errors == 1 { "" } else { "s" }
        )));
    }
    // Before any plan, so that the plans' free areas avoid it.
    let pids = Slots::new(image.processes.len())
        .map_err(|e| RestoreError::failed("the PID table (shared memory)", e.to_string()))?;
    let order = creation_order(image)?;
    let mut members = Vec::with_capacity(order.len());
    let mut zombies = Vec::new();
    for proc in order {
        if proc.process.is_zombie() {
            let pid = proc.pid();
            if !pids_of(image).contains(&proc.process.ppid) {
                return Err(RestoreError::Refused(format!(
                    "process {pid} is a zombie without a parent in the image"
                )));
            }
            if image
                .processes
                .iter()
                .any(|c| c.process.ppid == pid && c.pid() != pid)
            {
                return Err(RestoreError::Invalid(format!(
                    "the zombie {pid} has children in the image"
                )));
            }
            let want_pid = if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                i32::try_from(pid).ok()
            } else if options.new_pid {
                None
            } else {
                return Err(RestoreError::Refused(format!(
                    "PID {pid} (a zombie of the image) is in use by another process; restore with --new-pid to give it another PID"
                )));
            };
            zombies.push(Zombie { proc, want_pid });
            continue;
        }
        // The per-process checks and plan, on an image holding this process alone.
        let mut one = Image::new(image.header.clone());
        one.version = image.version;
        one.flags = image.flags;
        one.processes = vec![proc.clone()];
        one.pipes = image.pipes.clone();
        plan::check_structure(&one).map_err(|e| in_process(proc.pid(), e))?;
        let plan = plan::make_plan(&one, proc, options).map_err(|e| in_process(proc.pid(), e))?;
        members.push(Member { proc, plan });
    }
    let mut holders: std::collections::HashMap<u64, Vec<u32>> = Default::default();
    let mut max_fd = 2i32;
    for m in &members {
        for f in &m.proc.fds {
            max_fd = max_fd.max(i32::try_from(f.fd).unwrap_or(i32::MAX));
            if f.kind == FdKind::Pipe {
                let h = holders.entry(f.ino).or_default();
                if !h.contains(&f.pid) {
                    h.push(f.pid);
                }
            }
        }
    }
    // Unix socket pairs: both ends, and every process holding either.
    let mut pairs: std::collections::BTreeMap<(u64, u64), Vec<u32>> = Default::default();
    for m in &members {
        for f in m.proc.fds.iter().filter(|f| f.kind == FdKind::Unix) {
            if let Ok(Some(crak_format::record::fd::FdState::Unix { peer, .. })) =
                crak_format::record::fd::FdState::decode(f.kind, f.contents.as_bytes())
            {
                let h = pairs.entry((f.ino.min(peer), f.ino.max(peer))).or_default();
                if !h.contains(&f.pid) {
                    h.push(f.pid);
                }
            }
        }
    }
    // UNIX_SOCKET groups whose sockets several processes hold.
    let all_unix: Vec<&Fd<'_>> = members
        .iter()
        .flat_map(|m| m.proc.fds.iter())
        .filter(|f| f.kind == FdKind::UnixSocket)
        .collect();
    let shared_unix: Vec<Vec<u64>> = super::unix_socket::groups(&all_unix)
        .into_iter()
        .filter(|g| {
            let mut pids = all_unix
                .iter()
                .filter(|f| g.contains(&f.ino))
                .map(|f| f.pid);
            let first = pids.next();
            pids.any(|p| Some(p) != first)
        })
        .collect();
    let mut descs: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for m in &members {
        for f in m.proc.fds.iter().filter(|f| f.description != 0) {
            let h = descs.entry(f.description).or_default();
            if !h.contains(&f.pid) {
                h.push(f.pid);
            }
        }
    }
    // Files in flight (spec §3.23) are held by the process that makes their socket, or by the
    // pool when several processes share the socket (then it is made, and its queue refilled,
    // there): an object that is also another process's is shared through the pool.
    {
        use crak_format::record::fd::FdState;
        let pooled = |ino: u64| {
            pairs
                .iter()
                .any(|((a, b), h)| h.len() > 1 && (*a == ino || *b == ino))
                || shared_unix.iter().any(|g| g.contains(&ino))
        };
        let mut flying: Vec<(u32, &Fd<'_>)> = Vec::new();
        for s in &image.scm {
            let maker = if pooled(s.socket) {
                0
            } else {
                members
                    .iter()
                    .flat_map(|m| m.proc.fds.iter())
                    .find(|f| {
                        f.ino == s.socket && matches!(f.kind, FdKind::Unix | FdKind::UnixSocket)
                    })
                    .map_or(0, |f| f.pid)
            };
            flying.extend(s.files.iter().map(|f| (maker, f)));
        }
        let add = |h: &mut Vec<u32>, pid: u32| {
            if !h.contains(&pid) {
                h.push(pid);
            }
        };
        for (maker, f) in flying {
            if f.kind == FdKind::Pipe {
                add(holders.entry(f.ino).or_default(), maker);
            }
            if f.description != 0 {
                add(descs.entry(f.description).or_default(), maker);
            }
            if let Ok(Some(FdState::Unix { peer, .. })) =
                FdState::decode(f.kind, f.contents.as_bytes())
            {
                add(
                    pairs.entry((f.ino.min(peer), f.ino.max(peer))).or_default(),
                    maker,
                );
            }
        }
    }
    let shared_descs: Vec<u32> = descs
        .into_iter()
        .filter(|(_, h)| h.len() > 1)
        .map(|(d, _)| d)
        .collect();
    let shared_socks: Vec<(u64, u64)> = pairs
        .into_iter()
        .filter(|(_, h)| h.len() > 1)
        .map(|(k, _)| k)
        .collect();
    let mut shared_pipes: Vec<u64> = holders
        .into_iter()
        .filter(|(_, h)| h.len() > 1)
        .map(|(ino, _)| ino)
        .collect();
    shared_pipes.sort_unstable();
    let pool_base = max_fd
        .checked_add(64)
        .ok_or_else(|| RestoreError::Invalid("fd numbers too large".into()))?;
    let shared_anon = plan_shared_anon(&members)?;
    super::scm::check(image, &shared_socks, &shared_unix)?;
    Ok(Family {
        members,
        shared_pipes,
        shared_socks,
        shared_unix,
        shared_descs,
        pool_base,
        shared_anon,
        zombies,
        pids: Some(pids),
        externals: external_pipes(image, options)?,
    })
}

/// The pipes `--external-pipe N` reconnects: for each N, the pipe some process of the image
/// has at fd N, whose other end no fd of the image holds; crak-restore's own fd N must be a
/// pipe. Refused otherwise, before anything is created.
fn external_pipes(
    image: &Image<'_>,
    options: &Options,
) -> Result<Vec<(u64, bool, i32)>, RestoreError> {
    let mut out = Vec::new();
    let fds = || image.processes.iter().flat_map(|p| p.fds.iter());
    for &n in &options.external_pipes {
        let write_end = |f: &Fd<'_>| (f.open_flags as i32) & libc::O_ACCMODE == libc::O_WRONLY;
        let at_n: Vec<&Fd<'_>> = fds()
            .filter(|f| f.kind == FdKind::Pipe && i64::from(f.fd) == i64::from(n))
            .collect();
        let lone = at_n.iter().find(|f| {
            let w = write_end(f);
            !fds().any(|g| g.kind == FdKind::Pipe && g.ino == f.ino && write_end(g) != w)
        });
        let Some(f) = lone else {
            return Err(RestoreError::Refused(format!(
                "--external-pipe {n}: no process of the image has at fd {n} a pipe whose other end was outside the image"
            )));
        };
        let ino = f.ino;
        let w = write_end(f);
        if at_n.iter().any(|g| g.ino != ino) {
            return Err(RestoreError::Refused(format!(
                "--external-pipe {n}: processes of the image hold different pipes at fd {n}"
            )));
        }
        if !fdops::is_pipe(n) {
            return Err(RestoreError::Refused(format!(
                "--external-pipe {n}: fd {n} of crak-restore is not a pipe"
            )));
        }
        out.push((ino, w, n));
    }
    Ok(out)
}

/// The shared anonymous memory objects mapped by more than one process (the same `ino`, spec
/// §3.10), each with a temporary address free in every process's layout, every plan's and
/// crak-restore's own.
fn plan_shared_anon(members: &[Member<'_>]) -> Result<Vec<SharedAnon>, RestoreError> {
    let mut objects: Vec<(u64, u64, Vec<u32>)> = Vec::new();
    for m in members {
        for v in &m.proc.vmas {
            if v.kind != VmaKind::Anon || v.flags & MAP_SHARED == 0 || v.ino == 0 {
                continue;
            }
            // A memfd an fd holds is mapped from that fd (spec §3.13).
            if m.proc
                .fds
                .iter()
                .any(|f| f.kind == crak_format::record::fd::FdKind::Memfd && f.ino == v.ino)
            {
                continue;
            }
            let end = v
                .pgoff
                .checked_add(v.end.saturating_sub(v.start))
                .ok_or_else(|| {
                    RestoreError::Invalid(format!("VMA {:#x}: offset overflows", v.start))
                })?;
            match objects.iter_mut().find(|o| o.0 == v.ino) {
                Some(o) => {
                    o.1 = o.1.max(end);
                    if !o.2.contains(&v.pid) {
                        o.2.push(v.pid);
                    }
                }
                None => objects.push((v.ino, end, vec![v.pid])),
            }
        }
    }
    objects.retain(|o| o.2.len() > 1);
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let mut busy: Vec<(u64, u64)> = Vec::new();
    let mut after = 0u64;
    for m in members {
        busy.extend(m.proc.vmas.iter().map(|v| (v.start, v.end)));
        busy.push((m.plan.trampoline, m.plan.trampoline + TRAMPOLINE_LEN));
        busy.push((m.plan.special_tmp, m.plan.special_tmp + (16 << 20)));
        after = after.max(m.plan.trampoline + TRAMPOLINE_LEN);
        after = after.max(m.plan.special_tmp + (16 << 20));
    }
    let own = crate::procfs::maps(std::process::id() as i32)
        .map_err(|e| RestoreError::failed("reading /proc/self/maps", e.to_string()))?;
    busy.extend(own.iter().map(|m| (m.start, m.end)));
    let mut out = Vec::with_capacity(objects.len());
    for (ino, end, _) in objects {
        let size = end
            .div_ceil(PAGE)
            .checked_mul(PAGE)
            .filter(|&n| n <= plan::TASK_SIZE)
            .ok_or_else(|| {
                RestoreError::Invalid(format!("shared memory object {ino} is too large"))
            })?;
        busy.sort_unstable();
        let temp = plan::find_free(&busy, size, after).ok_or_else(|| {
            RestoreError::Refused("no free address range for the shared memory".into())
        })?;
        busy.push((temp, temp + size));
        out.push(SharedAnon { ino, temp, size });
    }
    Ok(out)
}

fn pids_of(image: &Image<'_>) -> Vec<u32> {
    image.processes.iter().map(|p| p.pid()).collect()
}

fn in_process(pid: u32, e: RestoreError) -> RestoreError {
    match e {
        RestoreError::Invalid(m) => RestoreError::Invalid(format!("process {pid}: {m}")),
        RestoreError::Refused(m) => RestoreError::Refused(format!("process {pid}: {m}")),
        other => other,
    }
}

/// The root (the one process whose parent is not in the image) first, then breadth first.
fn creation_order<'a>(image: &'a Image<'_>) -> Result<Vec<&'a Process<'a>>, RestoreError> {
    let pids: Vec<u32> = image.processes.iter().map(|p| p.pid()).collect();
    let roots: Vec<&Process<'_>> = image
        .processes
        .iter()
        .filter(|p| !pids.contains(&p.process.ppid) || p.process.ppid == p.pid())
        .collect();
    let [root] = roots.as_slice() else {
        return Err(RestoreError::Refused(format!(
            "the image holds {} separate process trees; crak restores one tree at a time",
            roots.len()
        )));
    };
    let mut order: Vec<&Process<'_>> = vec![root];
    let mut i = 0;
    while let Some(p) = order.get(i).copied() {
        order.extend(
            image
                .processes
                .iter()
                .filter(|c| c.process.ppid == p.pid() && c.pid() != p.pid()),
        );
        i += 1;
    }
    if order.len() != image.processes.len() {
        return Err(RestoreError::Invalid(
            "the processes' ppid links do not form one tree".into(),
        ));
    }
    Ok(order)
}

impl<'a> Family<'a> {
    /// The member with `pid`.
    pub fn member(&self, pid: u32) -> Option<&Member<'a>> {
        self.members.iter().find(|m| m.proc.pid() == pid)
    }

    /// The members whose parent is `pid`, in creation order.
    pub fn children_of(&self, pid: u32) -> impl Iterator<Item = &Member<'a>> {
        self.members
            .iter()
            .filter(move |m| m.proc.process.ppid == pid && m.proc.pid() != pid)
    }

    /// The zombies whose parent is `pid`.
    pub fn zombies_of(&self, pid: u32) -> impl Iterator<Item = &Zombie<'a>> {
        self.zombies
            .iter()
            .filter(move |z| z.proc.process.ppid == pid)
    }

    /// The slot of saved PID `pid` in [`Family::pids`].
    fn slot(&self, pid: u32) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.proc.pid() == pid)
            .or_else(|| {
                self.zombies
                    .iter()
                    .position(|z| z.proc.pid() == pid)
                    .map(|i| self.members.len() + i)
            })
    }

    /// Publishes that the process saved as `pid` now runs as `live`.
    pub fn publish(&self, pid: u32, live: i32) {
        if let (Some(t), Some(i)) = (&self.pids, self.slot(pid)) {
            t.set(i, live);
        }
    }

    /// The live PID of the process saved as `pid`: the saved one for a single process, else
    /// what the table says, waiting up to two seconds for it to be published. `None` when it
    /// is not a process of the image or was never published.
    pub fn live_pid(&self, pid: u32) -> Option<i32> {
        let Some(t) = &self.pids else {
            return i32::try_from(pid).ok();
        };
        let i = self.slot(pid)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let v = t.get(i);
            if v != 0 {
                return Some(v);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// The saved PID of a member or zombie and its live PID, for every one published.
    pub fn pid_map(&self) -> Vec<(u32, i32)> {
        let saved = self
            .members
            .iter()
            .map(|m| m.proc.pid())
            .chain(self.zombies.iter().map(|z| z.proc.pid()));
        match &self.pids {
            Some(t) => saved
                .enumerate()
                .map(|(i, p)| (p, t.get(i)))
                .filter(|&(_, l)| l != 0)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether `pid` is a process of the tree.
    pub fn has(&self, pid: u32) -> bool {
        self.member(pid).is_some()
    }
}

/// What the tree shares, created by the root at numbers from the pool base up.
#[derive(Debug, Default)]
pub struct Pool {
    /// Pipes: (inode, read end, write end).
    pipes: Vec<(u64, OwnedFd, OwnedFd)>,
    /// Unix socket ends: (inode of the end, the end).
    socks: Vec<(u64, OwnedFd)>,
    /// Open file descriptions: (FD `description`, the open file).
    files: Vec<(u32, OwnedFd)>,
    /// Pipe ends reconnected to the restorer's own fds (`--external-pipe`): (pipe inode,
    /// whether the image holds its write end, the restorer's fd).
    externals: Vec<(u64, bool, OwnedFd)>,
}

/// Creates and fills the shared pipes and maps the shared memory (in the root's restore
/// child).
pub fn make_pool(family: &Family<'_>, image: &Image<'_>) -> Result<Pool, String> {
    for s in &family.shared_anon {
        crate::sys::clone::map_shared_anon(s.temp, s.size as usize).map_err(|e| {
            format!(
                "mapping the shared memory {} at {:#x}+{:#x}: {e}",
                s.ino, s.temp, s.size
            )
        })?;
    }
    let mut pool = Pool::default();
    // First, while this process still has the restorer's descriptors.
    for &(ino, write, n) in &family.externals {
        let fd = fdops::dup_raw_at_least(n, family.pool_base)
            .map_err(|e| format!("--external-pipe {n}: dup: {e}"))?;
        pool.externals.push((ino, write, fd));
    }
    // The files in flight (spec §3.23) are FD layouts too: a shared open file or socket pair
    // may be found among them.
    let all_fds: Vec<Fd<'_>> = family
        .members
        .iter()
        .flat_map(|m| m.proc.fds.iter().cloned())
        .chain(image.scm.iter().flat_map(|s| s.files.iter().cloned()))
        .collect();
    let tty = family
        .members
        .first()
        .and_then(|m| m.plan.tty_path.as_deref());
    for &d in &family.shared_descs {
        let Some(f) = all_fds.iter().find(|f| f.description == d) else {
            continue;
        };
        let obj = super::files::open_shared(f, &image.pipes, tty)
            .map_err(|e| format!("shared open file {d}: {e}"))?;
        let obj = fdops::dup_at_least(obj.as_fd(), family.pool_base)
            .map_err(|e| format!("shared open file {d}: dup: {e}"))?;
        pool.files.push((d, obj));
    }
    // Shared pipes first: a file in flight may be one of their ends.
    for &ino in &family.shared_pipes {
        let e = |what: &str, err: std::io::Error| format!("shared pipe {ino}: {what}: {err}");
        let (r, w) = std::io::pipe().map_err(|x| e("pipe2", x))?;
        let r = fdops::dup_at_least(OwnedFd::from(r).as_fd(), family.pool_base)
            .map_err(|x| e("dup", x))?;
        let w = fdops::dup_at_least(OwnedFd::from(w).as_fd(), family.pool_base)
            .map_err(|x| e("dup", x))?;
        if let Some(p) = image.pipes.iter().find(|p| p.pipe_id == ino) {
            super::files::refill_pipe(&w, p, e)?;
        }
        pool.pipes.push((ino, r, w));
    }
    // Socket pairs whose queues carry no files first (a file in flight may be one of their
    // ends), then the files in flight on the pooled sockets, then the sockets carrying them.
    let carries = |a: u64, b: u64| image.scm.iter().any(|s| s.socket == a || s.socket == b);
    let mut order: Vec<(u64, u64)> = family.shared_socks.clone();
    order.sort_by_key(|&(a, b)| carries(a, b));
    let mut flight: Option<super::scm::InFlight> = None;
    for (a, b) in order {
        if carries(a, b) && flight.is_none() {
            flight = Some(pool_in_flight(family, image, &pool, tty)?);
        }
        let none = super::scm::InFlight::default();
        let fl = flight.as_ref().unwrap_or(&none);
        let Some(fa) = all_fds
            .iter()
            .find(|f| f.kind == FdKind::Unix && (f.ino == a || f.ino == b))
        else {
            continue;
        };
        let (mine, peer_ino, theirs) = super::files::unix_pair(fa, &all_fds, fl)
            .map_err(|e| format!("shared socket pair {a}/{b}: {e}"))?;
        let up = |fd: OwnedFd| {
            fdops::dup_at_least(fd.as_fd(), family.pool_base)
                .map_err(|e| format!("shared socket pair {a}/{b}: dup: {e}"))
        };
        pool.socks.push((fa.ino, up(mine)?));
        if let Some(t) = theirs {
            pool.socks.push((peer_ino, up(t)?));
        }
    }
    let flight = match flight {
        Some(f) => f,
        None => pool_in_flight(family, image, &pool, tty)?,
    };
    if !family.shared_unix.is_empty() {
        let unix: Vec<&Fd<'_>> = all_fds
            .iter()
            .filter(|f| f.kind == FdKind::UnixSocket)
            .collect();
        let external = family
            .members
            .first()
            .map(|m| m.plan.options.external_unix.as_slice())
            .unwrap_or(&[]);
        for group in &family.shared_unix {
            let made = super::unix_socket::make_group(group, &unix, external, &flight)
                .map_err(|e| format!("shared Unix sockets: {e}"))?;
            for (ino, s) in made {
                let s = fdops::dup_at_least(s.as_fd(), family.pool_base)
                    .map_err(|e| format!("shared Unix socket {ino}: dup: {e}"))?;
                pool.socks.push((ino, s));
            }
        }
    }
    Ok(pool)
}

/// The sockets the pool makes (those several processes share).
fn pooled_socket(family: &Family<'_>, ino: u64) -> bool {
    family
        .shared_socks
        .iter()
        .any(|&(a, b)| a == ino || b == ino)
        || family.shared_unix.iter().any(|g| g.contains(&ino))
}

/// The files in flight on the sockets the pool makes (spec §3.23), in the root: an object the
/// pool shares is that object, any other is opened on its own.
fn pool_in_flight(
    family: &Family<'_>,
    image: &Image<'_>,
    pool: &Pool,
    tty: Option<&[u8]>,
) -> Result<super::scm::InFlight, String> {
    let mut flight = super::scm::InFlight::default();
    let pids = family.pid_map();
    for s in image.scm.iter().filter(|s| pooled_socket(family, s.socket)) {
        let mut files = Vec::with_capacity(s.files.len());
        for f in &s.files {
            let e = |what: &str, err: String| {
                format!(
                    "file in flight with message {} of socket {}: {what}: {err}",
                    s.message, s.socket
                )
            };
            let obj = match pool.in_flight_object(f) {
                Some(o) => o.try_clone().map_err(|x| e("dup", x.to_string()))?,
                None => {
                    super::files::open_shared(f, &image.pipes, tty).map_err(|x| e("open", x))?
                }
            };
            files.push(obj);
        }
        let creds = s.has_credentials().then(|| crate::sys::unixsock::Ucred {
            pid: super::scm::live_pid(s.pid, None, &pids),
            uid: s.uid,
            gid: s.gid,
        });
        flight.insert(s.socket, s.message as usize, files, creds);
    }
    Ok(flight)
}

impl Pool {
    /// The pool's object for a file in flight (spec §3.23), when the pool holds it: a shared
    /// open file description, a shared pipe's end, a shared socket pair's end.
    pub fn in_flight_object(&self, f: &Fd<'_>) -> Option<&OwnedFd> {
        if f.description != 0 {
            if let Some((_, o)) = self.files.iter().find(|(d, _)| *d == f.description) {
                return Some(o);
            }
        }
        match f.kind {
            FdKind::Pipe => {
                let write = (f.open_flags as i32) & libc::O_ACCMODE == libc::O_WRONLY;
                self.pipes
                    .iter()
                    .find(|(ino, _, _)| *ino == f.ino)
                    .map(|(_, r, w)| if write { w } else { r })
            }
            FdKind::Unix => self
                .socks
                .iter()
                .find(|(ino, _)| *ino == f.ino)
                .map(|(_, s)| s),
            _ => None,
        }
    }
}

/// The pool's descriptor numbers, to keep open while the files are set up.
pub fn pool_fds(pool: &Pool) -> Vec<RawFd> {
    pool.pipes
        .iter()
        .flat_map(|(_, r, w)| [r.as_raw_fd(), w.as_raw_fd()])
        .chain(pool.socks.iter().map(|(_, s)| s.as_raw_fd()))
        .chain(pool.files.iter().map(|(_, f)| f.as_raw_fd()))
        .chain(pool.externals.iter().map(|(_, _, f)| f.as_raw_fd()))
        .collect()
}

/// Inodes of the UNIX and UNIX_SOCKET sockets of the pool.
pub fn pooled_sockets(pool: &Pool) -> Vec<u64> {
    pool.socks.iter().map(|(ino, _)| *ino).collect()
}

/// The pool's open file descriptions: (FD `description`, the object).
pub fn pool_files(pool: &Pool) -> Vec<(u32, &OwnedFd)> {
    pool.files.iter().map(|(d, f)| (*d, f)).collect()
}

/// Closes the pool's descriptors by number.
pub fn close_pool(pool: &Pool) {
    for fd in pool_fds(pool) {
        let _ = fdops::close_inherited(fd);
    }
}

/// Puts this process's ends of the shared pipes and sockets at their numbers, over what
/// [`super::files::restore_fds_keeping`] made for them.
pub fn place_shared(fds: &[Fd<'_>], pool: &Pool) -> Result<(), String> {
    for f in fds.iter() {
        let shared_file = pool
            .files
            .iter()
            .find(|(d, _)| f.description != 0 && *d == f.description);
        let is_write = (f.open_flags as i32) & libc::O_ACCMODE == libc::O_WRONLY;
        let external = pool
            .externals
            .iter()
            .find(|(ino, w, _)| f.kind == FdKind::Pipe && *ino == f.ino && *w == is_write);
        let end = if let Some((_, _, ext)) = external {
            // The restorer's own pipe: its status flags are not the image's to set.
            let target = RawFd::try_from(f.fd).map_err(|_| format!("fd {} out of range", f.fd))?;
            fdops::place_at(ext.as_fd(), target, f.fd_flags & FD_CLOEXEC != 0)
                .map_err(|e| format!("fd {} (external pipe {}): dup3: {e}", f.fd, f.ino))?;
            continue;
        } else if let Some((_, file)) = shared_file {
            file
        } else if !matches!(f.kind, FdKind::Pipe | FdKind::Unix | FdKind::UnixSocket) {
            continue;
        } else if matches!(f.kind, FdKind::Unix | FdKind::UnixSocket) {
            match pool.socks.iter().find(|(ino, _)| *ino == f.ino) {
                Some((_, s)) => s,
                None => continue,
            }
        } else {
            let Some((_, r, w)) = pool.pipes.iter().find(|(ino, _, _)| *ino == f.ino) else {
                continue;
            };
            if is_write {
                w
            } else {
                r
            }
        };
        fdops::set_status_flags(end.as_fd(), super::files::status_flags(f.open_flags))
            .map_err(|e| format!("fd {} (shared {}): F_SETFL: {e}", f.fd, f.ino))?;
        let target = RawFd::try_from(f.fd).map_err(|_| format!("fd {} out of range", f.fd))?;
        fdops::place_at(end.as_fd(), target, f.fd_flags & FD_CLOEXEC != 0)
            .map_err(|e| format!("fd {} (shared {}): dup3: {e}", f.fd, f.ino))?;
    }
    Ok(())
}

/// The process group `proc` must join, when a process of the tree leads it (its own pid
/// included); `None` when it leads its session (it calls `setsid`) or stays in its parent's
/// group.
/// The group is named by its leader's saved PID.
pub fn group_to_join(family: &Family<'_>, proc: &Process<'_>) -> Option<u32> {
    let p = &proc.process;
    if p.sid == p.pid {
        return None;
    }
    if p.pgid == p.pid || family.has(p.pgid) {
        return Some(p.pgid);
    }
    None
}

/// The `pgid` argument of `setpgid` that puts process `pid` (live PID `live`) in the group led
/// by saved PID `leader`: `live` for a group of its own, else the leader's live PID.
pub fn live_group(family: &Family<'_>, pid: u32, live: i32, leader: u32) -> Result<i32, String> {
    if leader == pid {
        return Ok(live);
    }
    family
        .live_pid(leader)
        .ok_or_else(|| format!("the leader {leader} of the group of process {pid} has no PID yet"))
}

/// Seizes a process of the tree that is waiting for it (after its setup) and stops it.
pub fn seize(pid: i32) -> Result<(), RestoreError> {
    let fail = |what: &str, e: String| RestoreError::failed(format!("{what} of process {pid}"), e);
    ptrace::seize(
        pid,
        ptrace::options::TRACESYSGOOD | ptrace::options::EXITKILL | ptrace::options::TRACECLONE,
    )
    .map_err(|e| fail("PTRACE_SEIZE", e.to_string()))?;
    ptrace::interrupt(pid).map_err(|e| fail("PTRACE_INTERRUPT", e.to_string()))?;
    loop {
        match ptrace::waitpid(pid).map_err(|e| fail("waitpid", e.to_string()))? {
            WaitStatus::Event { .. } => return Ok(()),
            WaitStatus::Stopped { .. } | WaitStatus::SyscallStop { .. } => {
                ptrace::cont(pid, 0).map_err(|e| fail("PTRACE_CONT", e.to_string()))?
            }
            WaitStatus::Continued { .. } => {}
            other => return Err(fail("stopping", format!("it ended ({other:?})"))),
        }
    }
}

/// Kills the half-built tree under `root` (and only it), deepest processes first, and reaps
/// what this process may reap.
pub fn kill_tree(root: i32) {
    let mut all = vec![root];
    let mut i = 0;
    while let Some(p) = all.get(i).copied() {
        if let Ok(kids) = crate::capture::tree::children(p) {
            all.extend(kids);
        }
        i += 1;
    }
    for &p in all.iter().rev() {
        let _ = crate::sys::process::kill(p, libc::SIGKILL);
    }
    for &p in all.iter().rev() {
        super::kill_child(p);
    }
}
