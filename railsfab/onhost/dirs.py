"""Make the app's directories, as root, without following a link anyone else put there.

Each path is walked from / one component at a time with O_NOFOLLOW (openat), so a symlink
planted anywhere on the way (the app user owns deploy_to and could swap a folder for a link
to /etc) ends the walk instead of redirecting it; owner and mode are set through the open
directory's descriptor. A directory that exists and belongs to another user than the one
wanted is never re-owned: that is reported, not changed. Prints a JSON list of problems.
"""

import grp
import json
import os
import pwd
import stat

FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(path, create_mode=0o755):
    """A descriptor of directory `path`, each missing component created (mode
    `create_mode`, so that nginx may pass through); raises OSError (ELOOP, ENOTDIR) at a
    link or a file on the way."""
    fd = os.open("/", FLAGS)
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                nxt = os.open(part, FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, create_mode, dir_fd=fd)
                nxt = os.open(part, FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def ensure(path, owner, group, mode):
    """Owner, group and mode of directory `path`; a problem as text, or None."""
    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    try:
        existed = os.path.lexists(path)
        fd = walk(path)
    except OSError as exc:
        return f"{path}: {exc.strerror} (a link or a file where a directory belongs)"
    try:
        st = os.fstat(fd)
        # someone else's directory (or root's with something in it) stays theirs
        if existed and st.st_uid != uid and (st.st_uid != 0 or os.listdir(fd)):
            return (f"{path} exists and belongs to {name_of(st.st_uid)}, not {owner}: "
                    "railsfab does not take over a directory that is not the app's")
        os.fchown(fd, uid, gid)
        os.fchmod(fd, int(mode, 8))
        if stat.S_IMODE(os.fstat(fd).st_mode) != int(mode, 8):
            return f"{path}: mode did not take"
        return None
    finally:
        os.close(fd)


def name_of(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def main(P):
    problems = [p for p in (ensure(*d) for d in P["dirs"]) if p]
    print(json.dumps(problems))
