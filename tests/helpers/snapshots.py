"""What is under a folder, to compare before and after: two snapshots, since "nothing changed" means two things.

snapshot_bytes: every file's content and every folder; a file rewritten with the same bytes counts as unchanged.
snapshot_bytes_and_mtimes: also each file's mtime, so a file rewritten at all counts as changed (a refusal must
not touch anything)."""


def snapshot_bytes(root):
    return {p: p.read_bytes() if p.is_file() else "folder" for p in root.rglob("*")}


def snapshot_bytes_and_mtimes(root):
    """Every file (bytes, mtime) and folder under root: what 'nothing created or overwritten' compares."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else "folder" for p in root.rglob("*")}
