"""Rebuild the training-code bench corpus: the ``.py`` files of public repositories with
hand-written PyTorch training loops, at pinned commits. Nothing of it is committed here.

    python bench/training_corpus.py /tmp/training-corpus                      # clones from GitHub
    python bench/training_corpus.py /tmp/training-corpus --mirror /work/.mirror

``--mirror DIR``: take each repository from a local mirror instead of the network, as git
directories at ``DIR/<owner>+<name>/repo`` (or ``DIR/<owner>+<name>``); repositories not
there are cloned. Files land in ``DEST/<owner>__<name>/<path>``. The same commits always
give the same corpus.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

# (owner/name, commit, folder inside the repository or "" for all of it)
REPOSITORIES = (
    ("karpathy/nanoGPT", "3adf61e154c3fe3fca428ad6bc3818b27a3b8291", ""),
    ("pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8", ""),
    ("eriklindernoren/PyTorch-GAN", "36d3c77e5ff20ebe0aeefd322326a134a279b93e", ""),
    ("facebookresearch/detr", "29901c51d7fe8712168b8d0d64351170bc0f83e0", ""),
    ("facebookresearch/mae", "efb2a8062c206524e35e47d04501ed4f544c0ae8", ""),
    ("facebookresearch/deit", "7e160fe43f0252d17191b71cbb5826254114ea5b", ""),
    ("facebookresearch/ConvNeXt", "048efcea897d999aed302f2639b6270aedf8d4c8", ""),
    ("facebookresearch/simsiam", "a7bc1772896d0dad0806c51f0bb6f3b16d290468", ""),
    ("facebookresearch/barlowtwins", "8e8d284ca0bc02f88b92328e53f9b901e86b4a3c", ""),
    ("microsoft/Swin-Transformer", "f82860bfb5225915aca09c3227159ee9e1df874d", ""),
    ("ultralytics/yolov5", "5081342f04fb287fc2e5f2b5a4e06752b7937b1c", ""),
    ("openai/improved-diffusion", "1bc7bbbdc414d83d4abf2ad8cc1446dc36c4e4d5", ""),
    ("lucidrains/denoising-diffusion-pytorch", "faed4db28e724735323fa91c70aa9b28a6e1cbac", ""),
    ("weiaicunzai/pytorch-cifar100", "11d8418f415b261e4ae3cb1ffe20d06ec95b98e4", ""),
    ("yunjey/pytorch-tutorial", "0500d3df5a2a8080ccfccbc00aca0eacc21818db", ""),
    ("salesforce/awd-lstm-lm", "1d466ec5875675ca6b6f0caacbb741240a29da9e", ""),
    ("sthalles/SimCLR", "1848fc934ad844ae630e6c452300433fe99acfd9", ""),
    ("seungeunrho/minimalRL", "c8efed8481e3cd40e9739cfde220a55522555b57", ""),
    ("meta-pytorch/torchtune", "bd2a0fc7c31430972728494fa01aaeeb0ebf1ba1", "recipes"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--mirror", type=Path, help="folder of local git mirrors (<owner>+<name>/repo)")
    args = parser.parse_args()
    files = 0
    for repository, commit, folder in REPOSITORIES:
        target = args.destination / repository.replace("/", "__")
        count = export(git_dir(repository, args.mirror), commit, folder, target)
        print(f"{repository}@{commit[:12]}: {count} files", file=sys.stderr)
        files += count
    print(f"{files} files in {args.destination}", file=sys.stderr)


def git_dir(repository: str, mirror: Path | None) -> Path:
    """A git directory holding ``commit``: the mirror's, else a fresh partial clone."""
    if mirror is not None:
        for candidate in (mirror / repository.replace("/", "+") / "repo", mirror / repository.replace("/", "+")):
            if candidate.is_dir():
                return candidate
    clone = Path(tempfile.mkdtemp(prefix="trainlint-corpus-")) / "repo.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", "--filter=blob:none", f"https://github.com/{repository}", str(clone)], check=True)
    return clone


def export(git_dir: Path, commit: str, folder: str, target: Path) -> int:
    """Write the ``.py`` files of ``folder`` at ``commit`` under ``target`` (blob by blob:
    a mirror may lack the large data files a whole-tree archive would need)."""
    listing = _git(git_dir, "ls-tree", "-r", "-z", commit, *([folder] if folder else []))
    entries = [line.split(b"\t", 1) for line in listing.split(b"\0") if line]
    blobs = [(info.split()[2], path.decode()) for info, path in entries if info.split()[1] == b"blob" and path.endswith(b".py")]
    contents = _git(git_dir, "cat-file", "--batch", stdin=b"".join(sha + b"\n" for sha, _ in blobs))
    stream = io.BytesIO(contents)
    for _, path in blobs:
        size = int(stream.readline().split()[2])
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(stream.read(size))
        stream.read(1)  # the newline after each object
    return len(blobs)


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], input=stdin, check=True, capture_output=True).stdout


if __name__ == "__main__":
    main()
