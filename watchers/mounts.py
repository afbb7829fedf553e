"""Whether a folder lives on a network filesystem, where inotify sees nothing.

Changes made by another host on an NFS or SMB share never reach this kernel's
inotify, so such inboxes are polled instead.
"""

from __future__ import annotations

from pathlib import Path

NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs",
    "fuse.sshfs", "fuse.rclone", "fuse.glusterfs", "fuse.s3fs", "davfs", "fuse.davfs2",
    "lustre", "gpfs", "beegfs", "virtiofs", "fuse.gcsfuse", "fuse.juicefs",
}


def filesystem_type(folder: Path, mounts_file: Path = Path("/proc/mounts")) -> str | None:
    """The type of the filesystem ``folder`` is on (longest matching mount point)."""
    target = str(folder.resolve())
    best, best_type = "", None
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def is_network_filesystem(folder: Path) -> bool:
    return (filesystem_type(folder) or "") in NETWORK_FILESYSTEMS
