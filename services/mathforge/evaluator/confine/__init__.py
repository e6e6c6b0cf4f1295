"""Kernel confinement for untrusted programs: Landlock (which files a program may read and
write), a seccomp filter (which system calls it may make), capabilities, NO_NEW_PRIVS and
non-dumpable parents. The sandbox launcher applies these, in order, before a program's first byte
runs; docs/security.md says what each one stops.

    from mathforge.evaluator.confine import landlock
    landlock.abi_version()        # 7 on this project's kernels, 0 without Landlock

The launcher imports this package (and so mathforge/ and mathforge/evaluator/) in every run,
before the program: keep all three free of heavy imports, or every run pays for them.
"""

# The layers the launcher can apply, in the order it applies them.
LAYERS = ("netns", "uid", "rlimits", "capabilities", "no_new_privs", "landlock", "seccomp", "audit_hook")
# What a run needs unless configured otherwise (docs/security.md: the opt-out for kernels without
# Landlock, and for gVisor, which has none).
REQUIRED_LAYERS = ("rlimits", "capabilities", "no_new_privs", "landlock", "seccomp")
# Exit statuses the launcher uses. A program can exit with them too, and so only make its own
# verdict worse ("memory" or "error" instead of "ok").
EXIT_MEMORY = 86
EXIT_REFUSED = 87
