"""Git checkpoints of a run's state directory: every candidate is a commit, kept ones are tagged.

- keep:    commit + annotated tag `autoloop/<run>/ckpt-NNN` (scores in the first message line, so
           `git tag -n` is a leaderboard) and a moved annotated `autoloop/<run>/best`.
- revert:  the candidate's commit stays reachable as `refs/autoloop/<run>/discarded/NNN`; the work tree
           goes back to the incumbent commit.
- large files (weights, optimizer state) above a threshold live by sha256 in a blob store outside git;
           the commit holds `.autoloop-manifest.json` naming them, and restore copies them back.

git is called through `repo.git` in short scopes and the Repo is closed after each use: GitPython leaks
`git cat-file` processes in long-lived programs otherwise. User strings never become git options.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Iterator

import git

from autoloop.target import sha256_file

MANIFEST = ".autoloop-manifest.json"
NESTED_GIT = ".autoloop-git"  # a nested repository's .git while the engine's git runs (StateRepo._hide_nested)
_IDENT = {"GIT_AUTHOR_NAME": "autoloop", "GIT_AUTHOR_EMAIL": "autoloop@localhost",
          "GIT_COMMITTER_NAME": "autoloop", "GIT_COMMITTER_EMAIL": "autoloop@localhost"}


def tag_name(run_id: str, iteration: int) -> str:
    return f"autoloop/{run_id}/ckpt-{iteration:03d}"


def best_tag(run_id: str) -> str:
    return f"autoloop/{run_id}/best"


def discarded_ref(run_id: str, iteration: int) -> str:
    return f"refs/autoloop/{run_id}/discarded/{iteration:03d}"


_REF_BAD_CHARS = set(" ~^:?*[\\/")


def ref_problem(name: str) -> str | None:
    """Why git would refuse `name` as one component of a ref (git check-ref-format), or None.

    Checked before anything is written: a name git rejects would otherwise fail at the first tag, with
    the run left `running`."""
    if not name:
        return "is empty"
    bad = sorted({c for c in name if c in _REF_BAD_CHARS or ord(c) < 32 or ord(c) == 127})
    if bad:
        return f"contains {''.join(bad)!r} (git refuses spaces, control characters and ~^:?*[\\/)"
    for rule, broken in (("may not start with '.'", name.startswith(".")),
                         ("may not start with '-'", name.startswith("-")),
                         ("may not contain '..'", ".." in name),
                         ("may not contain '@{'", "@{" in name),
                         ("may not be '@'", name == "@"),
                         ("may not end with '.'", name.endswith(".")),
                         ("may not end with '.lock'", name.endswith(".lock"))):
        if broken:
            return rule
    try:  # git itself has the last word (rules differ a little between versions)
        import subprocess

        ok = subprocess.run(["git", "check-ref-format", f"refs/tags/autoloop/{name}/ckpt-000"],
                            capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = True
    return None if ok else "is refused by `git check-ref-format`"




class StateRepo:
    """The state directory's history. The repository itself lives beside the state (`<state>.git`), out of a
    candidate's reach: a run() that empties its output directory (`rmtree(state)`, a common way to start
    clean) would otherwise delete every checkpoint. `<state>/.git` is only a one-line pointer, rewritten before
    every git operation. Runs made before this layout keep their `.git` directory inside the state."""

    def __init__(self, state_dir: Path, blob_dir: Path, large_file_mb: float = 1.0):
        self.dir = Path(state_dir)
        self.blobs = Path(blob_dir)
        self.large_bytes = int(large_file_mb * 1e6)
        self.git_dir = self.dir.parent / f"{self.dir.name}.git"
        self.ignored: list[str] = []  # files a .gitignore in the state kept out of the last commit
        self._has_gitignore = False

    def exists(self) -> bool:
        """Whether the repository exists (and, when it does, the state dir points at it again)."""
        self._link()
        return (self.dir / ".git").exists()

    def _link(self) -> None:
        """Make `<state>/.git` the pointer to `<state>.git` (relative: the run directory may be moved)."""
        if not self.git_dir.is_dir():
            return  # not created yet, or a run of the older layout (`.git` inside the state)
        self.dir.mkdir(parents=True, exist_ok=True)
        link, want = self.dir / ".git", f"gitdir: ../{self.git_dir.name}\n"
        with contextlib.suppress(OSError):
            if link.is_file() and not link.is_symlink() and link.read_text() == want:
                return
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)  # a repository a candidate made there is not the run's
        elif link.exists() or link.is_symlink():
            link.unlink()
        tmp = self.dir / ".git.autoloop-tmp"
        tmp.write_text(want)
        os.replace(tmp, link)

    def _gitdir(self) -> Path:
        return self.git_dir if self.git_dir.is_dir() else self.dir / ".git"

    @contextlib.contextmanager
    def _repo(self) -> Iterator[git.Repo]:
        self._link()
        repo = git.Repo(self.dir)
        try:
            with repo.git.custom_environment(**_IDENT):
                yield repo
        finally:
            repo.close()

    # -- setup -----------------------------------------------------------------------------------
    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.git_dir.is_dir() and not (self.dir / ".git").exists():
            # `git init --separate-git-dir`: the paths are engine-made, no user string becomes an option
            git.Git(str(self.dir)).init("-q", "--initial-branch=main", f"--separate-git-dir={self.git_dir}", ".")
        self._link()

    # -- large files -----------------------------------------------------------------------------
    def _blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest[2:]

    def _externalise_large_files(self) -> dict[str, dict]:
        """Copy files over the threshold into the blob store and exclude them from git."""
        manifest: dict[str, dict] = {}
        self._has_gitignore = False
        for path in self._work_files():
            if path.name == ".gitignore":
                self._has_gitignore = True
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(self.dir).as_posix()
            if rel == MANIFEST:
                continue
            size = path.stat().st_size
            if size < self.large_bytes:
                continue
            digest = sha256_file(path)
            blob = self._blob_path(digest)
            if not blob.exists():
                blob.parent.mkdir(parents=True, exist_ok=True)
                tmp = blob.with_suffix(".tmp")
                shutil.copyfile(path, tmp)
                os.replace(tmp, blob)
            manifest[rel] = {"sha256": digest, "size": size}
        exclude = self._gitdir() / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("".join("/" + _glob_escape(rel) + "\n" for rel in manifest))
        if manifest:
            (self.dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        else:
            (self.dir / MANIFEST).unlink(missing_ok=True)
        return manifest

    def _work_files(self) -> list[Path]:
        """Every path of the work tree outside `.git`, sorted. The walk prunes `.git` instead of listing it and
        filtering: the repository gains three loose objects per iteration, so walking it made every commit
        slower as the run grew (overhead 0.2 s at iteration 100, 0.4 s at 1,000 on the no-op bench)."""
        out: list[Path] = []
        for root, dirs, files in os.walk(self.dir):
            dirs[:] = [d for d in dirs if d != ".git"]
            out.extend(Path(root, name) for name in dirs + files if name != ".git")
        return sorted(out)

    def restore_large_files(self, into: Path | None = None) -> int:
        """Copy every file named in the manifest from the blob store into the work tree (or `into`)."""
        root = Path(into) if into else self.dir
        mpath = root / MANIFEST
        if not mpath.exists():
            return 0
        manifest = json.loads(mpath.read_text())
        for rel, meta in manifest.items():
            blob = self._blob_path(meta["sha256"])
            if not blob.exists():
                raise FileNotFoundError(f"blob {meta['sha256']} for {rel} is missing from {self.blobs}")
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blob, dest)
        return len(manifest)

    # -- nested repositories ---------------------------------------------------------------------
    def _nested_repos(self, name: str = ".git") -> list[Path]:
        """`<sub>/.git` entries below the top (a state that holds a clone of a project, say), deepest first."""
        found = []
        for root, dirs, files in os.walk(self.dir):
            top = Path(root) == self.dir
            if name in dirs + files and not top:
                found.append(Path(root) / name)
            dirs[:] = [d for d in dirs if d not in (".git", NESTED_GIT)]
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def _hide_nested(self) -> list[Path]:
        """git would store a nested repository as a bare link (its files lost) or refuse it (no commit yet):
        while the engine's git runs, each `<sub>/.git` is renamed `<sub>/.autoloop-git`, so its work tree and
        its history are committed as plain files and come back whole."""
        moved = []
        for g in self._nested_repos():
            os.replace(g, g.with_name(NESTED_GIT))
            moved.append(g.with_name(NESTED_GIT))
        return moved

    def _unhide_nested(self, root: Path | None = None, only: list[Path] | None = None) -> None:
        base = StateRepo(root, self.blobs) if root is not None else self
        for g in base._nested_repos(NESTED_GIT) if only is None else only:
            if not g.with_name(".git").exists():
                if g.is_dir():  # git keeps no empty folders, and a repository needs these
                    for d in ("objects", "refs/heads", "refs/tags"):
                        (g / d).mkdir(parents=True, exist_ok=True)
                os.replace(g, g.with_name(".git"))

    # -- commits ---------------------------------------------------------------------------------
    def commit(self, message: str) -> str:
        """Commit the whole work tree as it is (large files by manifest); returns the commit sha."""
        moved = self._hide_nested()
        try:
            return self._commit(message)
        finally:
            self._unhide_nested(only=moved)  # a commit changes no files: only what was hidden comes back

    def _commit(self, message: str) -> str:
        self._externalise_large_files()
        with self._repo() as repo:
            repo.git.add("-A", "--", ".")
            repo.git.commit("--allow-empty", "--no-verify", "-q", "-F", "-", istream=_stdin(message))
            # A .gitignore the target put in its state keeps those files out of every checkpoint (and a revert
            # deletes them): say which, so it is a choice and not a loss (large files are excluded on purpose).
            self.ignored = []
            if self._has_gitignore:
                out = repo.git.ls_files("--others", "--ignored", "--exclude-standard", "-z", "--directory")
                manifest = set(json.loads((self.dir / MANIFEST).read_text())) if (self.dir / MANIFEST).exists() else set()
                self.ignored = sorted(p for p in out.split("\0") if p and p not in manifest)
            return repo.git.rev_parse("HEAD")

    def tag(self, name: str, commit: str, message: str, force: bool = False) -> None:
        with self._repo() as repo:
            # Names are engine-made from validated run ids, so none can start with "-".
            args = ["-a", "-F", "-"] + (["-f"] if force else []) + [name, commit]
            repo.git.tag(*args, istream=_stdin(message))

    def delete_tag(self, name: str) -> None:
        with self._repo() as repo, contextlib.suppress(git.GitCommandError):
            repo.git.tag("-d", name)

    def set_ref(self, ref: str, commit: str) -> None:
        with self._repo() as repo:
            repo.git.update_ref(ref, commit)

    def resolve(self, rev: str) -> str | None:
        with self._repo() as repo:
            try:
                return repo.git.rev_parse("--verify", "-q", rev + "^{commit}")
            except git.GitCommandError:
                return None

    def tags(self, prefix: str) -> dict[str, str]:
        """Tag name -> commit sha for tags under `prefix`."""
        with self._repo() as repo:
            out = repo.git.for_each_ref("--format=%(refname:strip=2) %(*objectname)%(objectname)", f"refs/tags/{prefix}")
        res = {}
        for line in out.splitlines():
            name, sha = line.split(" ", 1)
            res[name] = sha[:40]  # annotated: peeled sha first; lightweight: own sha
        return res

    def restore(self, commit: str) -> None:
        """Make the work tree exactly the given commit, large files included."""
        self._hide_nested()  # as in commit: git sees the nested repositories' files as plain files
        try:
            with self._repo() as repo:
                repo.git.reset("--hard", "-q", commit)
                repo.git.clean("-ffdxq")  # -ff: a nested repository the hiding did not catch goes too
            self.restore_large_files()
            # The exclude list must match the restored manifest for the next commit.
            self._externalise_large_files()
        finally:
            self._unhide_nested()

    def export(self, rev: str, dest: Path) -> None:
        """Materialise a commit (by tag or sha) into `dest`, large files included."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with self._repo() as repo:
            buf = io.BytesIO()
            repo.archive(buf, treeish=rev, format="tar")
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            try:
                tar.extractall(dest, filter="tar")  # nothing outside dest; absolute links kept (a state may link a dataset)
            except TypeError:  # Python without extraction filters (< 3.10.12)
                tar.extractall(dest)
        self.restore_large_files(dest)
        self._unhide_nested(dest)


def _glob_escape(rel: str) -> str:
    return "".join("\\" + c if c in "*?[\\!#" else c for c in rel)


def _stdin(text: str):
    """GitPython's istream wants a file; a pipe keeps messages out of the argument list."""
    import tempfile

    f = tempfile.TemporaryFile()
    f.write(text.encode())
    f.seek(0)
    return f
