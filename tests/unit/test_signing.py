"""nodeagent.sources.signing: minisign's formats, both ways, against the real `minisign` tool (`make minisign`
installs Debian's package). Without the tool those tests skip, and fail under CI=true."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from nodeagent import cli, errors, settings
from nodeagent.sources import signing


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # cli.main bound the logger to this test's captured stderr


def minisign() -> str:
    path = shutil.which("minisign")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("minisign is not installed (make minisign); CI=true requires it")
        pytest.skip("minisign is not installed (make minisign)")
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[signing.PublicKey, signing.SecretKey]:
    pub, sec = signing.generate()
    return signing.parse_public_key(pub), signing.parse_secret_key(sec)


def test_sign_and_verify_round_trip(keys: tuple[signing.PublicKey, signing.SecretKey]) -> None:
    pub, sec = keys
    sig = signing.sign(b"bundle", sec, file_name="/srv/fleet.yaml")
    comment = signing.verify(b"bundle", sig, pub)
    assert comment.endswith("\tfile:fleet.yaml\thashed") and comment.startswith("timestamp:")
    assert sig.decode().splitlines()[1].startswith(base64.b64encode(b"ED").decode()[:2])


def test_tampered_data_wrong_key_and_altered_comment_are_refused(
    keys: tuple[signing.PublicKey, signing.SecretKey],
) -> None:
    pub, sec = keys
    sig = signing.sign(b"bundle", sec, trusted_comment="release 1")
    with pytest.raises(signing.SignatureError, match="does not match its signature"):
        signing.verify(b"bundle!", sig, pub)
    other_pub, _ = signing.generate()
    with pytest.raises(signing.SignatureError, match="but the pinned key is"):
        signing.verify(b"bundle", sig, signing.parse_public_key(other_pub))
    lines = sig.decode().splitlines()
    lines[2] = "trusted comment: release 2"
    with pytest.raises(signing.SignatureError, match="trusted comment was altered"):
        signing.verify(b"bundle", ("\n".join(lines) + "\n").encode(), pub)
    for garbage in (
        b"",
        b"not a signature",
        b"\xff\xfe",
        b"untrusted comment: x\n!!!\ntrusted comment: y\nAAAA\n",
    ):
        with pytest.raises(signing.SignatureError):
            signing.verify(b"bundle", garbage, pub)


def test_a_key_with_the_same_id_but_another_secret_is_refused(
    keys: tuple[signing.PublicKey, signing.SecretKey],
) -> None:
    pub, _ = keys
    _, other = signing.generate()
    impostor = signing.SecretKey(pub.key_id, signing.parse_secret_key(other).key)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(b"bundle", signing.sign(b"bundle", impostor), pub)


def test_key_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "k.pub"
    bad.write_text("untrusted comment: x\nnot base64!\n")
    with pytest.raises(errors.ConfigError, match=f"{bad}: the public key is not valid base64"):
        signing.load_public_key(str(bad))
    with pytest.raises(errors.ConfigError, match="cannot read public key"):
        signing.load_public_key(str(tmp_path / "missing.pub"))
    pub, _ = signing.generate()
    with pytest.raises(errors.ConfigError, match="not a minisign Ed25519 secret key"):
        signing.parse_secret_key(pub, "k.key")
    _, sec = signing.generate()
    raw = bytearray(base64.b64decode(sec.splitlines()[1]))
    raw[2:4] = b"Sc"  # a password-protected key
    with pytest.raises(errors.ConfigError, match="minisign -G -W"):
        signing.parse_secret_key("untrusted comment: c\n" + base64.b64encode(bytes(raw)).decode(), "k.key")
    raw[2:4] = b"\0\0"
    raw[70] ^= 1  # the seed
    with pytest.raises(errors.ConfigError, match="checksum does not match"):
        signing.parse_secret_key("untrusted comment: c\n" + base64.b64encode(bytes(raw)).decode(), "k.key")


def test_minisign_key_and_signature_verify_here(tmp_path: Path) -> None:
    """`minisign -G -W` then `minisign -S`: the operator's workflow with the standard tool."""
    tool = minisign()
    subprocess.run(
        [tool, "-G", "-W", "-p", "k.pub", "-s", "k.key"], cwd=tmp_path, check=True, capture_output=True
    )
    bundle = tmp_path / "fleet.yaml"
    bundle.write_bytes(b"apiVersion: v1\nkind: List\nitems: []\n")
    subprocess.run(
        [tool, "-S", "-s", "k.key", "-m", "fleet.yaml", "-t", "fleet release 7"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    pub = signing.load_public_key(str(tmp_path / "k.pub"))
    sig = (tmp_path / "fleet.yaml.minisig").read_bytes()
    assert signing.verify(bundle.read_bytes(), sig, pub) == "fleet release 7"
    with pytest.raises(signing.SignatureError):
        signing.verify(bundle.read_bytes() + b"\n", sig, pub)
    # the bare key as `minisign -P` takes it, too
    assert signing.parse_public_key((tmp_path / "k.pub").read_text().splitlines()[1]).key_id == pub.key_id
    # and a minisign secret key signs here (nodeagent sign with the operator's key)
    sec = signing.load_secret_key(str(tmp_path / "k.key"))
    assert sec.key_id == pub.key_id


def test_nodeagent_sign_output_verifies_with_minisign(tmp_path: Path) -> None:
    tool = minisign()
    subprocess.run(
        [tool, "-G", "-W", "-p", "k.pub", "-s", "k.key"], cwd=tmp_path, check=True, capture_output=True
    )
    bundle = tmp_path / "fleet.yaml"
    bundle.write_bytes(b"---\nkind: List\n" + os.urandom(4096).hex().encode())
    assert cli.main(["sign", str(bundle), "--key", str(tmp_path / "k.key")]) == cli.EXIT_OK
    done = subprocess.run(
        [tool, "-V", "-p", "k.pub", "-m", "fleet.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Signature and comment signature verified" in done.stdout + done.stderr
    assert "file:fleet.yaml" in done.stdout
    # a key made here works with minisign too, both ways
    pub_text, sec_text = signing.generate()
    (tmp_path / "n.pub").write_text(pub_text)
    (tmp_path / "n.key").write_text(sec_text)
    assert (
        cli.main(["sign", str(bundle), "--key", str(tmp_path / "n.key"), "--output", str(tmp_path / "n.sig")])
        == 0
    )
    assert (
        subprocess.run(
            [tool, "-V", "-p", "n.pub", "-m", "fleet.yaml", "-x", "n.sig"], cwd=tmp_path
        ).returncode
        == 0
    )
    # tampering is caught by minisign as well
    bundle.write_bytes(bundle.read_bytes() + b"x")
    assert (
        subprocess.run(
            [tool, "-V", "-p", "k.pub", "-m", "fleet.yaml"], cwd=tmp_path, capture_output=True
        ).returncode
        != 0
    )


def test_sign_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k.key").write_text("junk\n")
    (tmp_path / "b.yaml").write_text("x")
    assert cli.main(["sign", str(tmp_path / "b.yaml"), "--key", str(tmp_path / "k.key")]) == cli.EXIT_USAGE
    assert f"{tmp_path / 'k.key'}: not a minisign" in capsys.readouterr().err
    _, sec = signing.generate()
    (tmp_path / "k.key").write_text(sec)
    assert (
        cli.main(["sign", str(tmp_path / "missing.yaml"), "--key", str(tmp_path / "k.key")]) == cli.EXIT_USAGE
    )
    assert not (tmp_path / "missing.yaml.minisig").exists()


def test_a_bad_key_is_a_config_error_at_start(tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("untrusted comment: x\nAAAA\n")
    raw = {"sources": [{"url": "https://fleet.example/m", "publicKeyFile": "bad.pub"}]}
    with pytest.raises(
        errors.ConfigError,
        match=r"sources\[0\]\.publicKeyFile: .*bad\.pub: not a minisign Ed25519 public key",
    ):
        settings.from_dict(raw, str(tmp_path))
    pub, _ = signing.generate()
    (tmp_path / "good.pub").write_text(pub)
    raw["sources"][0]["publicKeyFile"] = "good.pub"
    assert settings.from_dict(raw, str(tmp_path)).sources[0].public_key_file == str(tmp_path / "good.pub")  # type: ignore[union-attr]
    # serve refuses to start with an unusable signing key (exit 2), before it listens
    (tmp_path / "dir").mkdir()
    args = [
        "serve",
        "--dir",
        str(tmp_path / "dir"),
        "--listen",
        "127.0.0.1:0",
        "--signing-key",
        str(tmp_path / "bad.pub"),
    ]
    assert cli.main(args) == cli.EXIT_USAGE
