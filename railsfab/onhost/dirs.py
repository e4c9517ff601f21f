"""Make the app's directories, as root, without following a link anyone else put there.

Each path is walked from / one component at a time with O_NOFOLLOW (openat), so a symlink
planted anywhere on the way (the deploy user owns deploy_to, the app's user the folders it
writes: either could swap a folder for a link to /etc) ends the walk instead of redirecting
it; owner and mode are set through the open directory's descriptor. A directory that exists
and belongs to another user than the one wanted is never re-owned (that is reported, not
changed), except the deploy user's folders the app's user takes over (`adopt`: the app ran as
the deploy user before app.app_user). Prints a JSON list of problems.
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


def ensure(path, owner, group, mode, adopt=""):
    """Owner, group and mode of directory `path`; a problem as text, or None. `adopt`: the
    user who owned it before (the deploy user, when the app ran as it): the folder and what
    that user owns inside it become `owner`'s."""
    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    before = pwd.getpwnam(adopt).pw_uid if adopt else None
    try:
        existed = os.path.lexists(path)
        fd = walk(path)
    except OSError as exc:
        return f"{path}: {exc.strerror} (a link or a file where a directory belongs)"
    try:
        st = os.fstat(fd)
        # someone else's directory (or root's with something in it) stays theirs
        if existed and st.st_uid not in (uid, before) and (st.st_uid != 0 or os.listdir(fd)):
            return (f"{path} exists and belongs to {name_of(st.st_uid)}, not {owner}: "
                    "railsfab does not take over a directory that is not the app's")
        os.fchown(fd, uid, gid)
        os.fchmod(fd, int(mode, 8))
        if before is not None and st.st_uid == before:
            adopt_inside(fd, before, uid)
        if stat.S_IMODE(os.fstat(fd).st_mode) != int(mode, 8):
            return f"{path}: mode did not take"
        return None
    finally:
        os.close(fd)


def adopt_inside(top, before, uid):
    """Everything `before` owns under the directory open as `top` becomes `uid`'s, group
    readable and writable (folders also setgid). Never through a link: links are re-owned
    themselves (lchown), anything else through a descriptor opened with O_NOFOLLOW and
    checked again once open."""
    for _, dirs, files, dfd in os.fwalk(dir_fd=top, follow_symlinks=False):
        for name in dirs + files:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if st.st_uid != before:
                    continue
                if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                    os.chown(name, uid, -1, dir_fd=dfd, follow_symlinks=False)
                    continue
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=dfd)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if st.st_uid == before and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    os.fchown(fd, uid, -1)
                    extra = 0o2070 if stat.S_ISDIR(st.st_mode) else 0o060
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) | extra)
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
