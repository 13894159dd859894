meta:
  id: crak
  title: crak checkpoint image, format 1.x
  file-extension: crak
  license: Apache-2.0
  ks-version: '0.11'
  endian: le
doc: |
  One checkpoint of a whole Linux process tree in one self-contained file: a 16-byte file header,
  then framed records (HEADER first, END last), each protected by a CRC32C.

  This is the machine-readable mirror of `spec/crak-format.md`, the normative description; where
  the two disagree, the Markdown document is right and the disagreement is a bug in both.

  What this description checks while parsing: magic, major version, critical flag bits, record
  framing (lengths within the file), enum values, the bounds the spec puts on counts and
  lengths, and that every payload holds at least the fields this version defines (bytes past
  them are ignored, spec §5). What it cannot express and leaves to the program that uses it
  (`spec/tools/ksy_dump.py` does all of it): CRC32C of each record and END's digest (§2.2,
  §2.4), END's counts, the ordering rules of §2.3, rejection of unknown CRITICAL record kinds,
  and that nothing follows END.
doc-ref: spec/crak-format.md

seq:
  - id: file_header
    type: file_header
  - id: records
    type: record
    repeat: until
    repeat-until: _.kind == record_kind::end
    doc: Every record in file order, END included (spec §2).

instances:
  header:
    value: records[0].payload.as<rec_header>
    doc: The HEADER record, which the spec requires to be the first record (§2.3).
  page_size:
    value: header.page_size
    doc: Bytes per page, from HEADER; sizes the page data of PAGES records.

types:
  # ------------------------------------------------------------------ framing (§2.1, §2.2)

  file_header:
    doc-ref: spec/crak-format.md#21-file-header
    seq:
      - id: magic
        contents: [0x89, 'CRAK', 0x0d, 0x0a, 0x1a]
        doc: 'bad-magic when different.'
      - id: major
        type: u2
        valid: 1
        doc: 'unsupported-version when not 1.'
      - id: minor
        type: u2
        doc: Any minor version is accepted (spec §5).
      - id: flags
        type: u4
        valid:
          expr: (_ & 0xffff) == 0
        doc: |
          Bits 0-15 are critical flags, bits 16-31 advisory. Version 1 defines no flag, so any
          critical bit is unknown (unknown-flag); advisory bits are ignored.

  record:
    doc-ref: spec/crak-format.md#22-record-framing
    seq:
      - id: kind
        type: u2
        enum: record_kind
        doc: Record kind; a value outside `record_kind` is an unknown kind.
      - id: flags
        type: u2
        doc: Bit 0 is CRITICAL; bits 1-15 are reserved.
      - id: reserved
        type: u4
      - id: length
        type: u8
        doc: |
          Payload length in bytes. It must not exceed what remains of the file, counting the
          4-byte CRC (truncated).
      - id: payload
        size: length
        type:
          switch-on: kind
          cases:
            'record_kind::header': rec_header
            'record_kind::process': rec_process
            'record_kind::creds': rec_creds
            'record_kind::mm': rec_mm
            'record_kind::rlimits': rec_rlimits
            'record_kind::sigactions': rec_sigactions
            'record_kind::thread': rec_thread
            'record_kind::xsave': rec_xsave
            'record_kind::sigqueue': rec_sigqueue
            'record_kind::vma': rec_vma
            'record_kind::pages': rec_pages
            'record_kind::zero_pages': rec_zero_pages
            'record_kind::fd': rec_fd
            'record_kind::pipe_data': rec_pipe_data
            'record_kind::note': rec_note
            'record_kind::auth': rec_auth
            'record_kind::shm': rec_shm
            'record_kind::sem': rec_sem
            'record_kind::msg': rec_msg
            'record_kind::timers': rec_timers
            'record_kind::locks': rec_locks
            'record_kind::scm': rec_scm
            'record_kind::end': rec_end
        doc: |
          Kind-specific payload. A kind this description does not know stays raw bytes: a reader
          skips it when CRITICAL is clear and rejects the image when it is set.
      - id: crc
        type: u4
        doc: |
          CRC32C (Castagnoli, reflected, init and xorout 0xFFFFFFFF) over the 16 header bytes
          followed by the payload (bad-crc).
    instances:
      is_critical:
        value: (flags & 1) != 0

  # ------------------------------------------------------------------ records (§3)

  rec_header:
    doc-ref: spec/crak-format.md#header
    seq:
      - id: arch
        type: u2
        valid: 62
        doc: ELF e_machine of the captured processes; 62 = x86_64, the only value in 1.x.
      - id: reserved0
        type: u2
      - id: page_size
        type: u4
        valid:
          any-of: [4096, 8192, 16384, 32768, 65536]
      - id: capture_time_ns
        type: s8
      - id: xsave_features
        type: u8
      - id: xsave_size
        type: u4
        valid:
          max: 65536
      - id: reserved1
        type: u4
      - id: kernel_release_len
        type: u4
        valid:
          max: 256
      - id: kernel_release
        size: kernel_release_len
      - id: hostname_len
        type: u4
        valid:
          max: 256
      - id: hostname
        size: hostname_len
      - id: tool_version_len
        type: u4
        valid:
          max: 256
      - id: tool_version
        size: tool_version_len
      - id: num_special_mappings
        type: u4
        valid:
          max: 16
      - id: special_mappings
        type: special_mapping
        repeat: expr
        repeat-expr: num_special_mappings

  special_mapping:
    doc: One vDSO/vvar/vsyscall mapping of the capture host (17 bytes).
    seq:
      - id: kind
        type: u1
        enum: vma_kind
        valid:
          any-of:
            - vma_kind::vdso
            - vma_kind::vvar
            - vma_kind::vvar_vclock
            - vma_kind::vvar_other
            - vma_kind::vsyscall
        doc: One of the special VMA kinds.
      - id: start
        type: u8
      - id: end
        type: u8

  rec_process:
    doc-ref: spec/crak-format.md#process
    seq:
      - id: pid
        type: u4
        valid:
          min: 1
          max: 4194304
      - id: ppid
        type: u4
      - id: pgid
        type: u4
      - id: sid
        type: u4
      - id: personality
        type: u4
      - id: umask
        type: u4
      - id: flags
        type: u4
      - id: comm_len
        type: u4
        valid:
          max: 16
      - id: comm
        size: comm_len
      - id: exe_len
        type: u4
        valid:
          max: 4096
      - id: exe
        size: exe_len
      - id: cwd_len
        type: u4
        valid:
          max: 4096
      - id: cwd
        size: cwd_len
      - id: root_len
        type: u4
        valid:
          max: 4096
      - id: root
        size: root_len
      - id: cmdline_len
        type: u4
        valid:
          max: 16777216
      - id: cmdline
        size: cmdline_len
      - id: environ_len
        type: u4
        valid:
          max: 16777216
      - id: environ
        size: environ_len
      - id: num_tids
        type: u4
        valid:
          min: 1
          max: 65536
      - id: tids
        type: u4
        repeat: expr
        repeat-expr: num_tids
        doc: The first is the thread-group leader and equals pid.

  rec_creds:
    doc-ref: spec/crak-format.md#creds
    seq:
      - id: pid
        type: u4
      - id: uid
        type: u4
      - id: euid
        type: u4
      - id: suid
        type: u4
      - id: fsuid
        type: u4
      - id: gid
        type: u4
      - id: egid
        type: u4
      - id: sgid
        type: u4
      - id: fsgid
        type: u4
      - id: cap_inheritable
        type: u8
      - id: cap_permitted
        type: u8
      - id: cap_effective
        type: u8
      - id: cap_bounding
        type: u8
      - id: cap_ambient
        type: u8
      - id: securebits
        type: u4
      - id: no_new_privs
        type: u4
        valid:
          any-of: [0, 1]
      - id: num_groups
        type: u4
        valid:
          max: 65536
      - id: groups
        type: u4
        repeat: expr
        repeat-expr: num_groups

  rec_mm:
    doc-ref: spec/crak-format.md#mm
    seq:
      - id: pid
        type: u4
      - id: reserved
        type: u4
      - id: start_code
        type: u8
      - id: end_code
        type: u8
      - id: start_data
        type: u8
      - id: end_data
        type: u8
      - id: start_brk
        type: u8
      - id: brk
        type: u8
      - id: start_stack
        type: u8
      - id: arg_start
        type: u8
      - id: arg_end
        type: u8
      - id: env_start
        type: u8
      - id: env_end
        type: u8
      - id: num_auxv
        type: u4
        valid:
          max: 64
      - id: auxv
        type: auxv_entry
        repeat: expr
        repeat-expr: num_auxv

  auxv_entry:
    seq:
      - id: key
        type: u8
      - id: value
        type: u8

  rec_rlimits:
    doc-ref: spec/crak-format.md#rlimits
    seq:
      - id: pid
        type: u4
      - id: num_limits
        type: u4
        valid:
          max: 64
      - id: limits
        type: rlimit
        repeat: expr
        repeat-expr: num_limits

  rlimit:
    seq:
      - id: resource
        type: u4
      - id: cur
        type: u8
        doc: 0xFFFFFFFFFFFFFFFF is RLIM_INFINITY.
      - id: max
        type: u8

  rec_timers:
    doc-ref: spec/crak-format.md#timers
    doc: Interval and POSIX timers of a process (format 1.2).
    seq:
      - id: pid
        type: u4
      - id: num_itimers
        type: u4
        valid:
          max: 3
      - id: itimers
        type: itimer
        repeat: expr
        repeat-expr: num_itimers
      - id: num_posix
        type: u4
        valid:
          max: 65536
      - id: posix
        type: posix_timer
        repeat: expr
        repeat-expr: num_posix

  itimer:
    doc: One armed interval timer (24 bytes).
    seq:
      - id: which
        type: u4
        enum: itimer_which
        valid:
          in-enum: true
      - id: reserved
        type: u4
      - id: value_ns
        type: u8
      - id: interval_ns
        type: u8

  posix_timer:
    doc: One POSIX timer (48 bytes).
    seq:
      - id: timer_id
        type: u4
      - id: clockid
        type: u4
      - id: notify
        type: u4
        enum: timer_notify
        valid:
          in-enum: true
      - id: signo
        type: u4
      - id: tid
        type: u4
      - id: overrun
        type: u4
      - id: sigval
        type: u8
      - id: value_ns
        type: u8
        doc: Time to the next expiry; 0 disarmed.
      - id: interval_ns
        type: u8

  rec_locks:
    doc-ref: spec/crak-format.md#locks
    doc: File locks held by a process (format 1.2).
    seq:
      - id: pid
        type: u4
      - id: num_locks
        type: u4
        valid:
          max: 1048576
      - id: locks
        type: file_lock
        repeat: expr
        repeat-expr: num_locks

  file_lock:
    doc: One lock (24 bytes).
    seq:
      - id: fd
        type: u4
      - id: kind
        type: u2
        enum: lock_kind
        valid:
          in-enum: true
      - id: lock_type
        type: u2
        enum: lock_type
        valid:
          in-enum: true
      - id: start
        type: u8
      - id: len
        type: u8
        doc: 0 is to the end of the file.

  rec_sigactions:
    doc-ref: spec/crak-format.md#sigactions
    seq:
      - id: pid
        type: u4
      - id: num_actions
        type: u4
        valid:
          max: 64
      - id: actions
        type: sigaction
        repeat: expr
        repeat-expr: num_actions

  sigaction:
    doc: The disposition of one signal (36 bytes).
    seq:
      - id: signo
        type: u4
        doc: 1-64 (checked by validators).
      - id: handler
        type: u8
        doc: 0 = SIG_DFL, 1 = SIG_IGN, else the handler's address.
      - id: flags
        type: u8
      - id: restorer
        type: u8
      - id: mask
        type: u8

  rec_thread:
    doc-ref: spec/crak-format.md#thread
    seq:
      - id: pid
        type: u4
      - id: tid
        type: u4
      - id: gpr
        type: gpr
      - id: blocked
        type: u8
      - id: pending
        type: u8
      - id: sas_sp
        type: u8
      - id: sas_size
        type: u8
      - id: sas_flags
        type: u4
      - id: rseq_len
        type: u4
      - id: rseq_addr
        type: u8
      - id: rseq_sig
        type: u4
      - id: reserved
        type: u4
      - id: clear_child_tid
        type: u8
      - id: ext
        type: thread_ext
        if: not _io.eof
        doc: The 1.2 fields, present together or not at all.

  thread_ext:
    doc-ref: spec/crak-format.md#thread
    seq:
      - id: robust_list
        type: u8
      - id: robust_list_len
        type: u8
      - id: name_len
        type: u4
        valid:
          max: 16
      - id: name
        size: name_len

  gpr:
    doc: x86_64 `user_regs_struct`, 27 u64 in the kernel's order (216 bytes).
    seq:
      - id: r15
        type: u8
      - id: r14
        type: u8
      - id: r13
        type: u8
      - id: r12
        type: u8
      - id: rbp
        type: u8
      - id: rbx
        type: u8
      - id: r11
        type: u8
      - id: r10
        type: u8
      - id: r9
        type: u8
      - id: r8
        type: u8
      - id: rax
        type: u8
      - id: rcx
        type: u8
      - id: rdx
        type: u8
      - id: rsi
        type: u8
      - id: rdi
        type: u8
      - id: orig_rax
        type: u8
      - id: rip
        type: u8
      - id: cs
        type: u8
      - id: eflags
        type: u8
      - id: rsp
        type: u8
      - id: ss
        type: u8
      - id: fs_base
        type: u8
      - id: gs_base
        type: u8
      - id: ds
        type: u8
      - id: es
        type: u8
      - id: fs
        type: u8
      - id: gs
        type: u8

  rec_xsave:
    doc-ref: spec/crak-format.md#xsave
    seq:
      - id: pid
        type: u4
      - id: tid
        type: u4
      - id: xstate_bv
        type: u8
      - id: area_len
        type: u4
        valid:
          max: 65536
      - id: area
        size: area_len
        doc: XSAVE area, standard format; its length equals HEADER's xsave_size (validators).

  rec_sigqueue:
    doc-ref: spec/crak-format.md#sigqueue
    seq:
      - id: pid
        type: u4
      - id: tid
        type: u4
        doc: 0 for the process-wide queue.
      - id: num_siginfos
        type: u4
        valid:
          max: 65536
      - id: siginfos
        size: 128
        repeat: expr
        repeat-expr: num_siginfos
        doc: The kernel's siginfo_t, 128 bytes each.

  rec_vma:
    doc-ref: spec/crak-format.md#vma
    seq:
      - id: pid
        type: u4
      - id: kind
        type: u2
        enum: vma_kind
        valid:
          in-enum: true
      - id: reserved0
        type: u2
      - id: start
        type: u8
      - id: end
        type: u8
      - id: prot
        type: u4
      - id: flags
        type: u4
      - id: madvise
        type: u4
      - id: reserved1
        type: u4
      - id: pgoff
        type: u8
      - id: dev
        type: u8
      - id: ino
        type: u8
      - id: size
        type: u8
      - id: mtime_ns
        type: s8
      - id: path_len
        type: u4
        valid:
          max: 4096
      - id: path
        size: path_len

  rec_pages:
    doc-ref: spec/crak-format.md#pages
    seq:
      - id: pid
        type: u4
      - id: reserved
        type: u4
      - id: addr
        type: u8
      - id: nr_pages
        type: u8
        valid:
          min: 1
      - id: data_offset
        type: u4
        valid:
          min: 28
      - id: padding
        size: data_offset - 28
        doc: Zeros, so that the page data starts at a file offset that is a multiple of page_size.
      - id: data
        size: nr_pages * _root.page_size
        doc: |
          The record's length equals data_offset + nr_pages * page_size: shorter is truncated,
          longer is bad-value (checked by the program using this description).

  rec_zero_pages:
    doc-ref: spec/crak-format.md#zero-pages
    seq:
      - id: pid
        type: u4
      - id: reserved
        type: u4
      - id: addr
        type: u8
      - id: nr_pages
        type: u8

  rec_fd:
    doc-ref: spec/crak-format.md#fd
    seq:
      - id: pid
        type: u4
      - id: fd
        type: u4
        valid:
          max: 1048575
      - id: fd_flags
        type: u4
      - id: kind
        type: u2
        enum: fd_kind
        valid:
          in-enum: true
      - id: reserved0
        type: u2
      - id: open_flags
        type: u4
      - id: description
        type: u4
        doc: |
          Open file description: fds with the same nonzero value share one (format 1.1; a
          1.0 writer leaves it 0).
      - id: pos
        type: u8
      - id: dev
        type: u8
      - id: ino
        type: u8
      - id: rdev
        type: u8
      - id: size
        type: u8
      - id: mtime_ns
        type: s8
      - id: mode
        type: u4
      - id: deleted
        type: u4
        valid:
          any-of: [0, 1]
      - id: path_len
        type: u4
        valid:
          max: 4096
      - id: path
        size: path_len
      - id: contents_len
        type: u4
      - id: contents
        size: contents_len
        doc: The file's bytes when deleted is 1, else empty.

  rec_scm:
    doc-ref: spec/crak-format.md#scm
    doc: |
      The ancillary data of one message queued on a Unix socket (format 1.3): the files passed
      with it (SCM_RIGHTS) and its credentials (SCM_CREDENTIALS).
    seq:
      - id: socket
        type: u8
        doc: Inode of the receiving socket (a UNIX or UNIX_SOCKET fd's `ino`).
      - id: message
        type: u4
        doc: Index of the message in that socket's queue.
      - id: flags
        type: u4
        valid:
          expr: (_ & 0xfffffffe) == 0
        doc: Bit 0 CREDENTIALS; other bits are a bad-value.
      - id: pid
        type: u4
      - id: uid
        type: u4
      - id: gid
        type: u4
      - id: reserved0
        type: u4
      - id: num_files
        type: u4
        valid:
          max: 253
      - id: files
        type: rec_fd
        repeat: expr
        repeat-expr: num_files
        doc: Each file is an FD payload with pid 0, fd its position and fd_flags 0.

  rec_pipe_data:
    doc-ref: spec/crak-format.md#pipe-data
    seq:
      - id: pipe_id
        type: u8
      - id: capacity
        type: u4
      - id: reserved
        type: u4
      - id: data_len
        type: u4
      - id: data
        size: data_len
        valid:
          expr: _.size <= capacity
        doc: |
          At most capacity bytes (bad-value), checked after the bytes are taken from the
          payload (truncated first when they run past it).

  ipc_perm:
    doc-ref: spec/crak-format.md#shm
    doc: The 32 bytes every System V IPC record (SHM, SEM, MSG; format 1.2) starts with.
    seq:
      - id: id
        type: u4
        doc: shmid, semid or msqid
      - id: key
        type: u4
        doc: key_t bits; 0 is IPC_PRIVATE
      - id: uid
        type: u4
      - id: gid
        type: u4
      - id: cuid
        type: u4
      - id: cgid
        type: u4
      - id: mode
        type: u4
      - id: reserved
        type: u4

  rec_shm:
    doc-ref: spec/crak-format.md#shm
    seq:
      - id: perm
        type: ipc_perm
      - id: size
        type: u8
      - id: cpid
        type: u4
      - id: lpid
        type: u4
      - id: data_len
        type: u4
      - id: data
        size: data_len
        valid:
          expr: _.size <= size
        doc: |
          The segment's first bytes, at most size (bad-value, checked after the bytes are taken
          from the payload); the rest of the segment is zero.

  rec_sem:
    doc-ref: spec/crak-format.md#sem
    seq:
      - id: perm
        type: ipc_perm
      - id: num_sems
        type: u4
        valid:
          min: 1
          max: 65536
      - id: sems
        type: sem
        repeat: expr
        repeat-expr: num_sems
    types:
      sem:
        seq:
          - id: value
            type: u4
          - id: pid
            type: u4

  rec_msg:
    doc-ref: spec/crak-format.md#msg
    seq:
      - id: perm
        type: ipc_perm
      - id: qbytes
        type: u8
      - id: lspid
        type: u4
      - id: lrpid
        type: u4
      - id: num_messages
        type: u4
        valid:
          max: 1048576
      - id: messages
        type: message
        repeat: expr
        repeat-expr: num_messages
    types:
      message:
        seq:
          - id: mtype
            type: s8
          - id: text_len
            type: u4
          - id: text
            size: text_len

  rec_note:
    doc-ref: spec/crak-format.md#note
    seq:
      - id: key_len
        type: u4
        valid:
          max: 256
      - id: key
        size: key_len
      - id: value_len
        type: u4
      - id: value
        size: value_len

  rec_auth:
    doc-ref: spec/crak-format.md#auth
    doc: |
      AUTH (0x0011, not critical): a signature over the records before it (§3.17). A reader
      that does not verify signatures may skip it; at most one per image (duplicate).
    seq:
      - id: algorithm
        type: u2
        doc: 1 = Ed25519
      - id: reserved
        type: u2
      - id: key_id
        size: 8
      - id: num_entries
        type: u4
        doc: Entries that follow, one per record before AUTH.
      - id: entries
        type: auth_entry
        repeat: expr
        repeat-expr: num_entries
      - id: signature
        size: 64

  auth_entry:
    seq:
      - id: kind
        type: u2
      - id: flags
        type: u2
      - id: reserved
        type: u4
      - id: offset
        type: u8
      - id: sha256
        size: 32

  rec_end:
    doc-ref: spec/crak-format.md#end
    seq:
      - id: record_count
        type: u8
        doc: Records before END, HEADER included.
      - id: byte_count
        type: u8
        doc: File offset of END's record header.
      - id: page_count
        type: u8
        doc: Sum of nr_pages over PAGES records.
      - id: digest
        type: u4
        doc: |
          CRC32C over the 16-byte file header followed by, for every record before END, its 16
          header bytes and its 4 CRC bytes (§2.4).
      - id: reserved
        type: u4

enums:
  record_kind:
    0x0001: header
    0x0002: process
    0x0003: creds
    0x0004: mm
    0x0005: rlimits
    0x0006: sigactions
    0x0007: thread
    0x0008: xsave
    0x0009: sigqueue
    0x000a: vma
    0x000b: pages
    0x000c: zero_pages
    0x000d: fd
    0x000e: pipe_data
    0x0010: note
    0x0011: auth
    0x0012: shm
    0x0013: sem
    0x0014: msg
    0x0015: timers
    0x0016: locks
    0x0017: scm
    0x00ff: end
  vma_kind:
    1: anon
    2: file
    3: heap
    4: stack
    5: vdso
    6: vvar
    7: vvar_vclock
    8: vvar_other
    9: vsyscall
    10: sysv_shm
  fd_kind:
    1: reg
    2: pipe
    3: fifo
    4: chr
    5: tty
    6: eventfd
    7: signalfd
    8: timerfd
    9: epoll
    10: unix
    11: tcp
    12: udp
    13: unix_socket
    15: inotify
    16: memfd
  itimer_which:
    0: real
    1: virtual
    2: prof
  timer_notify:
    0: signal
    1: none
    4: thread_id
  lock_kind:
    1: flock
    2: posix
    3: ofd
  lock_type:
    0: read
    1: write
