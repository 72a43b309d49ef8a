"""Sealed exports (issue 17, point 6): every export has a manifest beside it, a signed one OpenSSH signatures that
stock ssh-keygen checks, and `inspector report verify` names what changed."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from test_casebook import make_finding

from inspector import sshsig
from inspector.casebook import Casebook
from inspector.cli import main

ssh_keygen = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(ssh_keygen is None, reason="ssh-keygen is not installed (openssh-client)")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """An Ed25519 key pair as `ssh-keygen -t ed25519` writes it, a passphrase-protected one, and a stranger's."""
    folder = tmp_path_factory.mktemp("keys")
    if ssh_keygen is None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        made = {}
        for name, password in (("signer", None), ("protected", b"open sesame"), ("stranger", None)):
            key = Ed25519PrivateKey.generate()
            encryption = (serialization.BestAvailableEncryption(password) if password else
                          serialization.NoEncryption())
            (folder / name).write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.OpenSSH, encryption))
            (folder / f"{name}.pub").write_text(sshsig.public_key_line(sshsig.raw_public_key(key), name) + "\n")
            made[name] = folder / name
        return made
    for name, passphrase in (("signer", ""), ("protected", "open sesame"), ("stranger", "")):
        subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", passphrase, "-C", f"{name}@example",
                        "-f", str(folder / name)], check=True)
    return {name: folder / name for name in ("signer", "protected", "stranger")}


@pytest.fixture
def casebook(tmp_path):
    path = tmp_path / "case.db"
    with Casebook.open(path) as book:
        one = book.record(make_finding(1, prompt="a photo of Ann Graham Lotz"))
        book.label(one, "memorized", reviewer="ana")
        book.record(make_finding(2, prompt="colourful squares"))
    return path


def export(casebook, out, fmt, *extra) -> None:
    assert main(["casebook", "export", str(casebook), "--format", fmt, "--out", str(out), *extra]) == 0


def report_verify(capsys, export_path, *extra) -> tuple[int, str]:
    code = main(["report", "verify", str(export_path), *extra])
    return code, capsys.readouterr().out


def flip_one_byte(path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["html", "pdf", "csv", "json"])
def test_an_unsigned_export_verifies_its_manifest(casebook, tmp_path, capsys, fmt):
    out = tmp_path / f"report.{fmt}"
    export(casebook, out, fmt)
    manifest = json.loads((tmp_path / f"report.{fmt}.manifest.json").read_text())
    assert manifest["export"]["file"] == out.name and len(manifest["export"]["sha256"]) == 64
    with Casebook.open(casebook, readonly=True) as book:
        assert (manifest["casebook"]["chain_head"], manifest["casebook"]["chain_events"]) == book.chain_head()
    assert manifest["findings"] == [1, 2] and manifest["casebook"]["verified"] is True
    assert (len(manifest["images"]) > 0) == (fmt in ("html", "pdf"))
    code, text = report_verify(capsys, out)
    assert code == 0 and text.rstrip().endswith("verified")
    assert "is not signed" in text  # said, not hidden


def test_the_manifest_lists_each_embedded_image_with_its_sha256(casebook, tmp_path):
    import base64
    import hashlib
    import re

    out = tmp_path / "report.html"
    export(casebook, out, "html")
    manifest = json.loads((tmp_path / "report.html.manifest.json").read_text())
    embedded = [hashlib.sha256(base64.b64decode(m)).hexdigest()
                for m in re.findall(r'src="data:image/png;base64,([^"]+)"', out.read_text())]
    assert [i["sha256"] for i in manifest["images"]] == embedded
    with Casebook.open(casebook, readonly=True) as book:
        assert book.get(1).image_sha256 in embedded  # the generation is embedded exactly as stored


@pytest.mark.parametrize("fmt", ["html", "pdf"])
def test_one_changed_byte_of_a_signed_export_fails_report_verify(casebook, tmp_path, capsys, keys, fmt):
    out = tmp_path / f"report.{fmt}"
    export(casebook, out, fmt, "--sign", str(keys["signer"]))
    assert (tmp_path / f"report.{fmt}.sig").read_text().startswith("-----BEGIN SSH SIGNATURE-----")
    code, text = report_verify(capsys, out, "--key", f"{keys['signer']}.pub")
    assert code == 0 and "signed by the key SHA256:" in text and "the one given with --key" in text
    flip_one_byte(out, out.stat().st_size // 2)
    code, text = report_verify(capsys, out, "--key", f"{keys['signer']}.pub")
    assert code == 1 and "NOT verified" in text
    assert "the signature of the export (report." in text and "the file was changed after it was signed" in text
    assert "the export was changed after it was written" in text


def test_a_changed_image_in_an_html_export_is_named(casebook, tmp_path, capsys):
    out = tmp_path / "report.html"
    export(casebook, out, "html")
    page = out.read_text()
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,") + 40
    out.write_text(page[:start] + ("A" if page[start] != "A" else "B") + page[start + 1:])
    code, text = report_verify(capsys, out)
    manifest = json.loads((tmp_path / "report.html.manifest.json").read_text())
    first = manifest["images"][0]
    assert code == 1 and f"FAILED: image 1 ({first['what']}) was changed" in text


def test_a_rewritten_manifest_of_a_signed_export_is_caught(casebook, tmp_path, capsys, keys):
    out = tmp_path / "report.pdf"
    export(casebook, out, "pdf", "--sign", str(keys["signer"]))
    manifest_path = tmp_path / "report.pdf.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["casebook"]["verified"] = True
    manifest["findings"] = [1]
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    code, text = report_verify(capsys, out)
    assert code == 1 and "the signature of the manifest" in text


def test_a_signature_by_another_key_fails_against_the_trusted_key(casebook, tmp_path, capsys, keys):
    out = tmp_path / "report.html"
    export(casebook, out, "html", "--sign", str(keys["stranger"]))
    code, text = report_verify(capsys, out)  # without --key: good signature, but whose?
    assert code == 0 and "was not compared with a key you trust" in text
    code, text = report_verify(capsys, out, "--key", f"{keys['signer']}.pub")
    assert code == 1 and "made with another key" in text


def test_a_passphrase_protected_key_signs_with_the_passphrase_from_the_environment(casebook, tmp_path, capsys, keys,
                                                                                    monkeypatch):
    out = tmp_path / "report.json"
    monkeypatch.delenv(sshsig.PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", None)  # no terminal to ask on
    assert main(["casebook", "export", str(casebook), "--format", "json", "--out", str(out), "--sign",
                 str(keys["protected"])]) == 2
    assert "protected by a passphrase" in capsys.readouterr().err and not out.exists()
    monkeypatch.setenv(sshsig.PASSPHRASE_ENV, "wrong")
    assert main(["casebook", "export", str(casebook), "--format", "json", "--out", str(out), "--sign",
                 str(keys["protected"])]) == 2
    assert "passphrase" in capsys.readouterr().err and not out.exists()
    monkeypatch.setenv(sshsig.PASSPHRASE_ENV, "open sesame")
    export(casebook, out, "json", "--sign", str(keys["protected"]))
    assert report_verify(capsys, out, "--key", f"{keys['protected']}.pub")[0] == 0


def test_a_public_key_is_refused_as_a_signing_key_before_anything_is_written(casebook, tmp_path, capsys, keys):
    out = tmp_path / "report.pdf"
    assert main(["casebook", "export", str(casebook), "--format", "pdf", "--out", str(out), "--sign",
                 f"{keys['signer']}.pub"]) == 2
    assert "not a private key" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("case.db")) == []


def test_replacing_a_signed_export_with_an_unsigned_one_removes_the_old_signatures(casebook, tmp_path, capsys, keys):
    out = tmp_path / "report.html"
    export(casebook, out, "html", "--sign", str(keys["signer"]))
    export(casebook, out, "html", "--overwrite")
    assert not (tmp_path / "report.html.sig").exists() and not (tmp_path / "report.html.manifest.json.sig").exists()
    assert report_verify(capsys, out)[0] == 0


def test_an_export_without_its_manifest_cannot_be_checked(tmp_path, capsys):
    lone = tmp_path / "report.pdf"
    lone.write_bytes(b"%PDF-1.4 not ours")
    assert main(["report", "verify", str(lone)]) == 2
    assert "has no manifest beside it" in capsys.readouterr().err


@needs_ssh_keygen
@pytest.mark.parametrize("fmt", ["html", "pdf"])
def test_stock_openssh_verifies_a_signed_export_and_rejects_a_changed_one(casebook, tmp_path, keys, fmt):
    out = tmp_path / f"report.{fmt}"
    export(casebook, out, fmt, "--sign", str(keys["signer"]))
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("reviewer@example " + (keys["signer"].with_suffix(".pub")).read_text())

    def openssh(path, signature) -> subprocess.CompletedProcess:
        with open(path, "rb") as data:
            return subprocess.run([ssh_keygen, "-Y", "verify", "-f", str(allowed), "-I", "reviewer@example",
                                   "-n", "file", "-s", str(signature)], stdin=data, capture_output=True, text=True)

    done = openssh(out, f"{out}.sig")
    assert done.returncode == 0, done.stderr
    assert 'Good "file" signature for reviewer@example' in done.stdout + done.stderr
    manifest = tmp_path / f"report.{fmt}.manifest.json"
    assert openssh(manifest, f"{manifest}.sig").returncode == 0
    flip_one_byte(out, 100)
    assert openssh(out, f"{out}.sig").returncode != 0


@needs_ssh_keygen
def test_a_signature_made_by_ssh_keygen_is_read_by_the_inspector(tmp_path, keys):
    message = tmp_path / "message.txt"
    message.write_text("the casebook of Lotz v. Model Co.\n")
    subprocess.run([ssh_keygen, "-q", "-Y", "sign", "-f", str(keys["signer"]), "-n", "file", str(message)],
                   check=True, capture_output=True)
    signature = sshsig.verify(message.read_bytes(), (tmp_path / "message.txt.sig").read_text(),
                              public_key=sshsig.load_public_key(f"{keys['signer']}.pub"))
    assert signature.fingerprint.startswith("SHA256:")
    with pytest.raises(sshsig.SignatureError, match="changed after it was signed"):
        sshsig.verify(b"another text", (tmp_path / "message.txt.sig").read_text())


def test_the_casebook_is_checked_against_the_chain_the_export_names(casebook, tmp_path, capsys):
    out = tmp_path / "report.pdf"
    export(casebook, out, "pdf")
    with Casebook.open(casebook) as book:  # work goes on after the export: that is fine
        book.label(2, "novel", reviewer="bob")
    code, text = report_verify(capsys, out, "--casebook", str(casebook))
    assert code == 0 and "still holds the label chain" in text and "1 events were added since" in text
    # Someone removes the newest events and rewrites the casebook's own record of its head: the casebook alone
    # cannot show it, the export's manifest can.
    import sqlite3

    conn = sqlite3.connect(casebook, isolation_level=None)
    conn.execute("DROP TRIGGER label_events_are_append_only_delete")
    conn.execute("DELETE FROM label_events WHERE id >= 3")
    conn.execute("UPDATE casebook_info SET value = (SELECT hash FROM label_events ORDER BY id DESC LIMIT 1)"
                 " WHERE key = 'event_head'")
    conn.execute("UPDATE casebook_info SET value = '2' WHERE key = 'event_count'")
    conn.close()
    code, text = report_verify(capsys, out, "--casebook", str(casebook))
    assert code == 1 and "no longer holds the label chain the export was made from" in text
