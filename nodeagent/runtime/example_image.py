"""`python -m nodeagent.runtime.example_image TAG...` (`make run`): each example image present, pulled, or
built locally from the host's static busybox.

It lives beside the Docker runtime, not in agent/localimage.py, because it drives the engine: localimage
only knows how to make the image (the runtime calls it), so the two never import each other.
"""

from __future__ import annotations

import sys

from nodeagent import errors
from nodeagent.runtime import docker as docker_rt


def ensure_image_offline(tag: str) -> str:
    """The image `tag` for examples: present, else pulled, else built locally from busybox (said aloud)."""
    rt = docker_rt.DockerRuntime()
    if rt.image_present(tag):
        return f"{tag}: present"
    try:
        rt.pull(tag)
        return f"{tag}: pulled"
    except errors.ImagePullError:
        pass
    rt.build_busybox_image(tag, {"io.nodeagent.local-image": "true"})
    return (
        f"{tag}: no registry answered, so it was built locally FROM scratch with this host's static busybox"
    )


def main(argv: list[str] | None = None) -> int:
    tags = argv if argv is not None else sys.argv[1:]
    try:
        for tag in tags:
            print(ensure_image_offline(tag))
    except errors.NodeAgentError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
