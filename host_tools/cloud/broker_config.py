"""The broker's access control, written from the pairing registry.

    spot broker-config --out DIR [--tls]

writes what a Mosquitto 2.0 needs to let no one in where they don't belong:

    passwd         every account, its password hashed the way `mosquitto_passwd`
                   does by default (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte
                   salt: "$7$101$<salt b64>$<hash b64>")
    acl            who may read and write which topic (spot/topics.py's layout)
    mosquitto.conf listeners (plain, and TLS with --tls), no anonymous clients
    tls/           with --tls: a local CA, the broker's certificate and key

Accounts (made by the registry, passwords kept there, never printed):
  * a device: user = its logical address as 8 hex digits. It reads its own
    downlink, its site's group and broadcast topics; it writes its uplink, its
    own downlink (the end-of-queue marker, SPEC.md "Delivery") and its
    availability topic (its will and farewell, SPEC.md 8.5).
  * a controller: user = its address. For every device it is paired with
    (`spot pair`): it writes the device's downlink and reads its uplink and
    availability. Nothing else: no other device, no site group.
  * the cloud: user "cloud". Reads every site's uplinks and availability,
    writes every downlink (devices, groups, broadcast). Scale-out workers
    subscribe through shared subscriptions ($share/<group>/spot/+/up/+):
    Mosquitto 2.0 checks a shared subscription's ACL against the topic filter
    after the "$share/<group>/" prefix, and every delivered message against
    the account's read ACL, so the plain read lines cover them (the tests
    check it against the real broker).

Mosquitto 2.0 refuses a subscription whose filter is wider than the ACL grants
(a device asking for spot/# gets SUBACK 0x80) and silently drops a publish the
ACL does not allow (MQTT 3.1.1 has no way to say no to a PUBLISH).

After provisioning or pairing, write the files again and reload the broker
(SIGHUP re-reads the password and ACL files).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from spot import topics

if TYPE_CHECKING:
    from host_tools.cloud.registry import Registry

CLOUD_USER = "cloud"
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for "$7$" (sha512-pbkdf2)
BROADCAST = 0xFFFFFFFF


def new_password() -> str:
    """A fresh random broker password (192 bits, URL-safe text)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """A password as mosquitto_passwd stores it: $7$<iterations>$<salt>$<PBKDF2-SHA512>."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """True if `stored` (a passwd file's hash) is this password's."""
    _, alg, it, salt, digest = stored.split("$")
    if alg != "7":
        raise ValueError(f"unsupported hash ${alg}$")
    return secrets.compare_digest(hash_password(password, base64.b64decode(salt), int(it)), stored)


# what the files say ---------------------------------------------------------------
def _device_topics(site: str, address: int, groups: Iterable[int]) -> list[str]:
    lines = [f"topic readwrite {topics.topic(site, address)}"]  # downlink + end-of-queue marker
    for g in (*groups, BROADCAST):
        lines.append(f"topic read {topics.topic(site, g)}")
    lines.append(f"topic write {topics.topic(site, address, up=True)}")
    lines.append(f"topic write {topics.status(site, address)}")
    return lines


def acl_text(reg: "Registry") -> str:
    """The ACL file: one `user` block per account, nothing for anyone else."""
    out = ["# SPOT broker ACL, written by `spot broker-config` from the registry: do not edit.",
           "# No topic line before the first user: anonymous clients get nothing.", ""]
    out += [f"user {CLOUD_USER}",
            "topic read spot/+/up/+", "topic read spot/+/status/+",
            "topic write spot/+/+", ""]
    for name, d in sorted(reg.data["devices"].items()):
        address = int(name, 16)
        out.append(f"user {address:08x}")
        out += _device_topics(d["site"], address, [reg.site_group(d["site"])])
        out.append("")
    paired: dict[int, set[int]] = {}
    for e in reg.entries():
        if not e.group and e.peer != reg.cloud and e.state == "active":
            paired.setdefault(e.peer, set()).add(e.device)
    for ctl in sorted(paired):
        out.append(f"user {ctl:08x}")
        for dev in sorted(paired[ctl]):
            site = reg.device(dev)["site"]
            out += [f"topic write {topics.topic(site, dev)}",
                    f"topic read {topics.topic(site, dev, up=True)}",
                    f"topic read {topics.status(site, dev)}"]
        out.append("")
    return "\n".join(out)


def passwd_text(reg: "Registry") -> str:
    """The password file: every account the registry knows, hashed."""
    lines = []
    for user in reg.broker_users():
        lines.append(f"{user}:{hash_password(reg.broker_password(user))}")
    return "\n".join(lines) + "\n"


def conf_text(out: Path, port: int = 1883, bind: str = "0.0.0.0", tls_port: int | None = None,
              require_tls: bool = False) -> str:
    """A mosquitto.conf using the files in `out` (plain listener unless require_tls)."""
    lines = ["# SPOT broker, written by `spot broker-config`.", "per_listener_settings false",
             "allow_anonymous false", f"password_file {out / 'passwd'}", f"acl_file {out / 'acl'}"]
    if not require_tls:
        lines.append(f"listener {port} {bind}")
    if tls_port is not None:
        lines += [f"listener {tls_port} {bind}", f"cafile {out / 'tls' / 'ca.pem'}",
                  f"certfile {out / 'tls' / 'server.pem'}", f"keyfile {out / 'tls' / 'server.key'}"]
    return "\n".join(lines) + "\n"


def _private(path: Path, data: str | bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def write(reg: "Registry", out: Path, tls: bool = False, hosts: Iterable[str] = ("localhost", "127.0.0.1"),
          port: int = 1883, tls_port: int = 8883) -> list[Path]:
    """Write passwd, acl, mosquitto.conf (and tls/ with tls) into `out`; saves the registry
    if accounts had to be made (devices provisioned before broker accounts existed)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    before = len(reg.data.get("broker", {}))
    reg.ensure_broker_accounts()
    written = [_private(out / "passwd", passwd_text(reg)), _private(out / "acl", acl_text(reg))]
    if tls:
        written += write_tls(reg, out / "tls", hosts)
    conf = out / "mosquitto.conf"
    conf.write_text(conf_text(out, port, tls_port=tls_port if tls else None))
    written.append(conf)
    if len(reg.data.get("broker", {})) != before:
        reg.save()
    return written


# TLS --------------------------------------------------------------------------------
def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(days: int = 3650):
    """A new local CA: (certificate, private key), ECDSA P-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("SPOT local CA")).issuer_name(_name("SPOT local CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert, ca_key, cn: str, hosts: Iterable[str] = (), client: bool = False, days: int = 825):
    """A certificate signed by the CA: a server's (hosts as DNS names and IP addresses in
    its subjectAltName) or a client's (cn: a device's user name). (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                               else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    names: list = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ca_dir(reg: "Registry") -> Path:
    """Where the registry keeps its CA (beside the registry: it is as secret)."""
    return reg.path.parent / "broker-ca"


def load_or_make_ca(reg: "Registry"):
    """The registry's CA, made on first use: (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    d = ca_dir(reg)
    if (d / "ca.pem").exists():
        cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
        return cert, key
    cert, key = make_ca()
    d.mkdir(parents=True, exist_ok=True)
    _private(d / "ca.key", _key_pem(key))
    (d / "ca.pem").write_bytes(_pem(cert))
    return cert, key


def write_tls(reg: "Registry", out: Path, hosts: Iterable[str]) -> list[Path]:
    """The broker's TLS files: ca.pem (the registry's CA), server.pem, server.key."""
    ca, ca_key = load_or_make_ca(reg)
    hosts = list(hosts)
    cert, key = issue(ca, ca_key, hosts[0] if hosts else "spot-broker", hosts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.pem").write_bytes(_pem(ca))
    (out / "server.pem").write_bytes(_pem(cert))
    return [out / "ca.pem", out / "server.pem", _private(out / "server.key", _key_pem(key))]


def device_ca(reg: "Registry") -> bytes:
    """The CA certificate a device verifies the broker with, DER (MicroPython's ssl
    takes DER; PEM needs a NUL terminator there)."""
    return _der(load_or_make_ca(reg)[0])


def main_args(args) -> int:
    from host_tools.cloud.registry import Registry

    reg = Registry(args.registry)
    if not reg.data["devices"]:
        raise ValueError(f"the registry {reg.path} has no device yet: `spot provision` first")
    hosts = [h for h in (args.host or ["localhost", "127.0.0.1"])]
    written = write(reg, args.out, tls=args.tls, hosts=hosts, port=args.port, tls_port=args.tls_port)
    accounts = len(reg.broker_users())
    print(f"broker configuration for {accounts} accounts written to {args.out}:")
    for p in written:
        print(f"  {p}")
    print(f"run it:  mosquitto -c {Path(args.out).resolve() / 'mosquitto.conf'}"
          "   (after provisioning or pairing: write again, then kill -HUP the broker)")
    return 0


def add_parser(sub, reg_help: str) -> None:
    p = sub.add_parser("broker-config", help="write Mosquitto's password file, ACL and config",
                       description="Write the broker's password file (mosquitto_passwd format), "
                                   "ACL (each device its own topics, controllers their pairings, "
                                   "the cloud everything) and a mosquitto.conf, from the registry.")
    p.add_argument("--out", required=True, type=Path, help="folder for the files")
    p.add_argument("--tls", action="store_true",
                   help="also a TLS listener: the registry's CA and a server certificate")
    p.add_argument("--host", action="append",
                   help="the broker's name or address in its certificate (repeatable; "
                        "default localhost and 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="the plain listener's port")
    p.add_argument("--tls-port", type=int, default=8883, help="the TLS listener's port")
    p.add_argument("--registry", type=Path, help=reg_help)
    p.set_defaults(func=main_args)
