"""Ed25519 signatures in OpenSSH's ``ssh-keygen -Y sign`` format (SSHSIG), so that anyone can check a signed
export with stock OpenSSH::

    ssh-keygen -Y verify -f allowed_signers -I NAME -n file -s report.pdf.sig < report.pdf

The format is OpenSSH's ``PROTOCOL.sshsig``: the signature covers the magic ``SSHSIG``, the namespace, an empty
reserved field, the hash algorithm's name and the hash (sha512) of the message, each as an SSH wire string; the
armored file holds the magic, version 1, the public key, the namespace, the reserved field, the hash algorithm
and the signature blob. Keys are read with ``cryptography`` (a passphrase-protected key needs ``bcrypt``, a
dependency). Only Ed25519 keys are taken: ``ssh-keygen -t ed25519`` makes one. No Qt, no network.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import UserError

MAGIC = b"SSHSIG"
VERSION = 1
#: The namespace the inspector signs exports in (``ssh-keygen -Y ... -n file``, OpenSSH's namespace for files).
NAMESPACE = "file"
HASH_ALGORITHM = "sha512"
KEY_TYPE = "ssh-ed25519"
#: Environment variable holding the passphrase of a protected signing key (else it is asked on the terminal).
PASSPHRASE_ENV = "INSPECTOR_KEY_PASSPHRASE"
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"


class SignatureError(UserError):
    """A key or signature that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Signature:
    """A parsed SSHSIG signature."""

    public_key: bytes  # the raw 32-byte Ed25519 public key
    namespace: str
    hash_algorithm: str
    signature: bytes  # the raw 64-byte Ed25519 signature

    @property
    def public_key_line(self) -> str:
        """The key as an ``authorized_keys`` / ``.pub`` line without a comment: ``ssh-ed25519 AAAA...``."""
        return public_key_line(self.public_key)

    @property
    def fingerprint(self) -> str:
        """The key's fingerprint as ``ssh-keygen -l`` prints it: ``SHA256:...``."""
        return fingerprint(self.public_key)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("truncated")
    (n,) = struct.unpack(">I", buf[pos:pos + 4])
    end = pos + 4 + n
    if end > len(buf):
        raise ValueError("truncated")
    return buf[pos + 4:end], end


def _key_blob(public_key: bytes) -> bytes:
    return _string(KEY_TYPE.encode()) + _string(public_key)


def public_key_line(public_key: bytes, comment: str = "") -> str:
    """``ssh-ed25519 BASE64 [comment]``, as ``ssh-keygen`` writes a ``.pub`` file."""
    line = f"{KEY_TYPE} {base64.b64encode(_key_blob(public_key)).decode('ascii')}"
    return f"{line} {comment}" if comment else line


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` and the unpadded base64 of the sha256 of the key's wire form, as ``ssh-keygen -l`` shows it."""
    digest = hashlib.sha256(_key_blob(public_key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _signed_data(message_hash: bytes, namespace: str) -> bytes:
    return (MAGIC + _string(namespace.encode()) + _string(b"") + _string(HASH_ALGORITHM.encode())
            + _string(message_hash))


def load_private_key(path: str | os.PathLike, passphrase: bytes | None = None):
    """An Ed25519 private key from an OpenSSH key file (``ssh-keygen -t ed25519``).

    A protected key takes ``passphrase``, else ``$INSPECTOR_KEY_PASSPHRASE``, else it is asked on the terminal.

    Raises
    ------
    SignatureError
        The file is missing, not an OpenSSH private key, not Ed25519, or the passphrase is wrong or missing.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" not in data:
        raise SignatureError(f"{path} is not a private key: pass the private key file (not the .pub), as"
                             " `ssh-keygen -t ed25519 -f KEY` writes it")
    if passphrase is None and os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    try:
        key = serialization.load_ssh_private_key(data, passphrase)
    except TypeError as exc:
        if passphrase is None and "password" in str(exc).lower() and _interactive():
            import getpass

            asked = getpass.getpass(f"Passphrase for {path}: ").encode()
            return load_private_key(path, asked)
        if passphrase is None:
            raise SignatureError(f"the signing key {path} is protected by a passphrase: set {PASSPHRASE_ENV}"
                                 " or run in a terminal to be asked") from None
        raise SignatureError(f"cannot read the signing key {path}: {exc}") from None
    except ValueError as exc:
        if passphrase is not None and ("password" in str(exc).lower() or "decrypt" in str(exc).lower()
                                       or "corrupt" in str(exc).lower()):
            raise SignatureError(f"wrong passphrase for the signing key {path}") from None
        raise SignatureError(f"{path} is not an OpenSSH private key ({exc}): make one with"
                             " `ssh-keygen -t ed25519`") from None
    except Exception as exc:  # noqa: BLE001 - e.g. UnsupportedAlgorithm for a cipher this build lacks
        raise SignatureError(f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 key: make one with `ssh-keygen -t ed25519`")
    return key


def _interactive() -> bool:
    import sys

    return sys.stdin is not None and sys.stdin.isatty()


def load_public_key(path: str | os.PathLike) -> bytes:
    """The raw Ed25519 public key of a ``.pub`` file (``ssh-ed25519 AAAA... comment``) or of an
    ``allowed_signers`` line (``principal ssh-ed25519 AAAA...``).

    Raises
    ------
    SignatureError
        When the file is missing or holds no Ed25519 public key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SignatureError(f"cannot read the public key {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        words = line.split()
        if KEY_TYPE in words:
            i = words.index(KEY_TYPE)
            if i + 1 < len(words):
                try:
                    blob = base64.b64decode(words[i + 1], validate=True)
                    kind, pos = _read_string(blob, 0)
                    key, _ = _read_string(blob, pos)
                except ValueError:  # bad base64 too (binascii.Error)
                    continue
                if kind == KEY_TYPE.encode() and len(key) == 32:
                    return key
    raise SignatureError(f"{path} holds no ssh-ed25519 public key: pass the .pub file of the signing key")


def raw_public_key(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(message: bytes, private_key, namespace: str = NAMESPACE) -> str:
    """The armored SSHSIG signature of ``message`` (the text of a ``.sig`` file, ending in a newline)."""
    digest = hashlib.sha512(message).digest()
    sig = private_key.sign(_signed_data(digest, namespace))
    blob = (MAGIC + struct.pack(">I", VERSION) + _string(_key_blob(raw_public_key(private_key)))
            + _string(namespace.encode()) + _string(b"") + _string(HASH_ALGORITHM.encode())
            + _string(_string(KEY_TYPE.encode()) + _string(sig)))
    text = base64.b64encode(blob).decode("ascii")
    lines = [text[i:i + 70] for i in range(0, len(text), 70)]  # ssh-keygen wraps at 70 columns
    return "\n".join([_BEGIN, *lines, _END]) + "\n"


def parse(armored: str) -> Signature:
    """Read an armored SSHSIG signature.

    Raises
    ------
    SignatureError
        When it is not an SSHSIG signature, or not one made with an Ed25519 key.
    """
    text = armored.strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        raise SignatureError("not an SSH signature (no BEGIN/END SSH SIGNATURE lines)")
    try:
        blob = base64.b64decode("".join(text[len(_BEGIN):-len(_END)].split()), validate=True)
        if blob[:6] != MAGIC:
            raise ValueError("no SSHSIG magic")
        (version,) = struct.unpack(">I", blob[6:10])
        if version != VERSION:
            raise ValueError(f"version {version}")
        key_blob, pos = _read_string(blob, 10)
        namespace, pos = _read_string(blob, pos)
        _reserved, pos = _read_string(blob, pos)
        hash_algorithm, pos = _read_string(blob, pos)
        sig_blob, pos = _read_string(blob, pos)
        kind, kpos = _read_string(key_blob, 0)
        public_key, _ = _read_string(key_blob, kpos)
        sig_kind, spos = _read_string(sig_blob, 0)
        raw_sig, _ = _read_string(sig_blob, spos)
    except (ValueError, struct.error) as exc:  # bad base64 too (binascii.Error)
        raise SignatureError(f"the SSH signature is damaged ({exc})") from None
    if kind != KEY_TYPE.encode() or sig_kind != KEY_TYPE.encode() or len(public_key) != 32:
        raise SignatureError(f"the signature was not made with an Ed25519 key ({kind.decode(errors='replace')})")
    return Signature(public_key, namespace.decode("utf-8", "replace"), hash_algorithm.decode("ascii", "replace"),
                     raw_sig)


def verify(message: bytes, armored: str, namespace: str = NAMESPACE, public_key: bytes | None = None) -> Signature:
    """Check an SSHSIG signature of ``message``; return it parsed.

    With ``public_key`` (raw 32 bytes) the signature must also have been made with that key.

    Raises
    ------
    SignatureError
        The signature is damaged, in another namespace, made with another key, or does not match the message.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig = parse(armored)
    if sig.namespace != namespace:
        raise SignatureError(f"the signature is for namespace {sig.namespace!r}, not {namespace!r}")
    if sig.hash_algorithm not in ("sha512", "sha256"):
        raise SignatureError(f"the signature uses an unknown hash {sig.hash_algorithm!r}")
    if public_key is not None and public_key != sig.public_key:
        raise SignatureError(f"the signature was made with another key ({sig.fingerprint}, expected"
                             f" {fingerprint(public_key)})")
    digest = hashlib.new(sig.hash_algorithm, message).digest()
    data = (MAGIC + _string(namespace.encode()) + _string(b"") + _string(sig.hash_algorithm.encode())
            + _string(digest))
    try:
        Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature, data)
    except InvalidSignature:
        raise SignatureError("the signature does not match: the file was changed after it was signed") from None
    return sig
