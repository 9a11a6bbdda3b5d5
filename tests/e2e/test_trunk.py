"""Dial-out through a SIP trunk that asks for digest credentials.

Debian's kamailio plays the trunk: it listens only on TLS (127.0.0.1, a
certificate from the test PKI), answers the bridge's first INVITE with
407 Proxy Authentication Required (RFC 3261 section 22.3, RFC 2617 digest),
checks the retried INVITE against one username and password written into its
own configuration (``pv_proxy_authenticate``, no database), and forwards what
it accepts over TLS to a baresip phone.  SRTP runs end to end between the
bridge and the phone; the trunk only carries the signalling.

Every run gets its own kamailio configuration, runtime directory and pid
file in a temporary directory; the trunk logs one line per request it sees
and per request it sends (with the transport), which the tests read.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bridge.harness import BridgeProcess, wait_for, write_config
from tests.e2e.baresip import (
    Pki,
    free_port,
    make_pki,
    read_wav,
    tone_levels,
)
from tests.e2e.test_phones import Host

KAMAILIO = "kamailio"
TRUNK_USER = "carebridge-trunk"
TRUNK_PASSWORD = "Tr0mbone-Quartz-71"
TRUNK_REALM = "trunk.carebridge.test"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
#: kamailio-tls-modules, a package of its own on Debian
TLS_MODULES = glob.glob("/usr/lib/*/kamailio/modules/tls.so") + glob.glob(
    "/usr/lib/kamailio/modules/tls.so"
)

pytestmark = [
    pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip"),
    pytest.mark.skipif(
        shutil.which(KAMAILIO) is None or not TLS_MODULES,
        reason="needs kamailio with TLS (Debian: kamailio, kamailio-tls-modules)",
    ),
    pytest.mark.timeout(180),
]

# the trunk's routing: only TLS; every request from the bridge but ACK needs
# valid credentials for the one configured user, in-dialog ones (re-INVITE,
# BYE) too, and a nonce serves one request only, so each is challenged
_ROUTING = r"""
request_route {
    route(CREDENTIALS);
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    xlog("L_NOTICE", "trunk: received $rm from $si:$sp over $pr\n");
    if ($pr != "tls") {
        sl_send_reply("403", "TLS Only");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }

    # inside a dialog: the bridge authenticates again, then Record-Route rules
    if (has_totag()) {
        if (!is_method("ACK") && is_direction("downstream")) {
            route(AUTH);
        }
        if (loose_route()) {
            t_relay();
        } else if (is_method("ACK") && t_check_trans()) {
            t_relay();
        } else if (!is_method("ACK")) {
            sl_send_reply("404", "Not Here");
        }
        exit;
    }
    t_check_trans();
    if (!is_method("INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    route(AUTH);
    xlog("L_NOTICE", "trunk: relaying to $ru\n");
    record_route();
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

# RFC 3261 section 22.3: challenge, then check the retried request
route[AUTH] {
    pv_proxy_authenticate("$var(realm)", "$var(password)", "0");
    $var(auth) = $rc;
    if ($var(auth) == -2 || ($var(auth) > 0 && $au != $var(user))) {
        xlog("L_NOTICE", "trunk: refused $rm from $au\n");
        if ($var(refuse) == "challenge") {
            proxy_challenge("$var(realm)", "1");
        } else {
            sl_send_reply("403", "Forbidden");
        }
        exit;
    }
    if ($var(auth) < 0) {
        xlog("L_NOTICE", "trunk: challenging $rm (auth $var(auth))\n");
        proxy_challenge("$var(realm)", "1");
        exit;
    }
    xlog("L_NOTICE", "trunk: authenticated $rm from $au\n");
    consume_credentials();
}

onsend_route {
    if (is_request()) {
        xlog("L_NOTICE", "trunk: sent $rm to $snd(ip):$snd(port) over $snd(sproto)\n");
    }
}
"""


def split_pem(pem_path: str, directory: str) -> tuple[str, str]:
    """Certificate and key files from a combined PEM (the phone's, here).

    make_pki keeps its CA key to itself, so the trunk reuses the phone's
    certificate: it names 127.0.0.1 and chains to the test CA.
    """
    text = Path(pem_path).read_text()
    certs = re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", text, re.S
    )
    keys = re.findall(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n",
        text,
        re.S,
    )
    if not certs or not keys:
        raise ValueError(f"{pem_path} holds no certificate and key")
    cert = os.path.join(directory, "trunk-cert.pem")
    key = os.path.join(directory, "trunk-key.pem")
    Path(cert).write_text("".join(certs))
    Path(key).write_text(keys[0])
    os.chmod(key, 0o600)
    return cert, key


class TrunkError(RuntimeError):
    pass


class Trunk:
    """kamailio in the foreground as a TLS-only, digest-authenticating proxy.

    Wrong credentials get 403 (``refuse="forbid"``) or, as some trunks do,
    one more 407 challenge (``refuse="challenge"``).
    """

    def __init__(
        self,
        pki: Pki,
        directory: Path,
        user: str = TRUNK_USER,
        password: str = TRUNK_PASSWORD,
        realm: str = TRUNK_REALM,
        refuse: str = "forbid",
    ) -> None:
        if refuse not in ("forbid", "challenge"):
            raise ValueError(f"refuse must be 'forbid' or 'challenge', not {refuse!r}")
        for value in (user, password, realm):
            if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
                raise ValueError(f"{value!r} cannot go into a kamailio config")
        self.pki = pki
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.dir / "run"
        self.run_dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.log_path = self.dir / "kamailio.log"
        cert, key = split_pem(pki.phone_pem, str(self.dir))
        tls_cfg = self.dir / "tls.cfg"
        tls_cfg.write_text(
            f"""
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {cert}
private_key = {key}
ca_list = {pki.ca_file}

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
ca_list = {pki.ca_file}
"""
        )
        self.config = self.dir / "kamailio.cfg"
        self.config.write_text(
            f"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
enable_tls=yes
listen=tls:127.0.0.1:{self.port}
server_header="Server: carebridge test trunk"

loadmodule "tls.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"

modparam("tls", "config", "{tls_cfg}")
modparam("rr", "append_fromtag", 1)
modparam("auth", "one_time_nonce", 1)

route[CREDENTIALS] {{
    $var(realm) = "{realm}";
    $var(user) = "{user}";
    $var(password) = "{password}";
    $var(refuse) = "{refuse}";
}}
"""
            + _ROUTING
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port};transport=tls"

    def start(self) -> Trunk:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                KAMAILIO,
                "-f",
                str(self.config),
                "-DD",
                "-E",
                "-P",
                str(self.run_dir / "kamailio.pid"),
                "-Y",
                str(self.run_dir),
                "-w",
                str(self.run_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        # ready once it completes a TLS handshake with its certificate verified
        context = ssl.create_default_context(cafile=self.pki.ca_file)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TrunkError(f"kamailio exited: {self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                        return self
            except (OSError, ssl.SSLError):
                time.sleep(0.1)
        self.stop()
        raise TrunkError(f"kamailio did not accept TLS in {START_TIMEOUT:g}s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        """The trunk's own log lines (``trunk: ...``), prefix removed."""
        return re.findall(r"trunk: (.*)", self.log())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # kamailio's children share its process group
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self.proc = None


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(str(directory))


@pytest.fixture
def trunk(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[Trunk]:
    refuse = getattr(request, "param", "forbid")
    proxy = Trunk(pki, tmp_path / "kamailio", refuse=refuse).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def start_bridge(
    tmp_path: Path, pki: Pki, trunk: Trunk
) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def start(
        username: str = TRUNK_USER,
        password: str = TRUNK_PASSWORD,
        proxy: str | None = None,
    ) -> Any:
        extra = "\n".join(
            [
                f'ca_file = "{pki.ca_file}"',
                f'proxy = "{proxy or trunk.uri}"',
                f'username = "{username}"',
                f'password = "{password}"',
            ]
        )
        config = write_config(tmp_path, sip=True, extra=extra)
        process = BridgeProcess(config, log_level="debug")
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


# -- tests -------------------------------------------------------------------------


def test_calls_through_the_trunk_connect_with_srtp_and_carry_audio(
    trunk: Trunk, start_bridge: Callable[..., BridgeProcess], phones: Any
) -> None:
    bridge = start_bridge()
    host = Host(bridge)
    phone_a, phone_b = phones(440.0), phones(1000.0)
    leg_a = host.dial(phone_a.uri, "Ann via the trunk")
    leg_b = host.dial(phone_b.uri, "Bob via the trunk")

    for leg in (leg_a, leg_b):
        entry = host.wait_state(leg, "connected")
        assert entry["transport"] == "sip-tls"
        assert entry["srtp_suite"].startswith("AES_CM_128_HMAC_SHA1")
        assert entry["encrypted"] is True
    time.sleep(4.0)

    # the host ends both calls; the BYEs go through the trunk too
    host.expel(leg_a)
    host.expel(leg_b)
    phone_a.wait_event("CALL_CLOSED")
    phone_b.wait_event("CALL_CLOSED")
    ended = {entry["leg"]: entry for entry in host.roster()["ended"]}
    for leg in (leg_a, leg_b):
        assert ended[leg]["ended_reason"] == "expelled by host", ended

    for phone, own, other in ((phone_a, 440.0, 1000.0), (phone_b, 1000.0, 440.0)):
        path = phone.recording("dec")
        assert path is not None
        rate, heard = read_wav(path)
        levels = tone_levels(heard, rate, [own, other], skip=1.5)
        assert levels[other] > 0.1, levels
        assert levels[own] < 0.01 * levels[other], levels

    # every INVITE and BYE was challenged, answered with the configured user's
    # credentials and only then relayed (a nonce serves one request)
    lines = trunk.lines()
    assert lines.count(f"relaying to {phone_a.uri}") == 1, lines
    assert lines.count(f"relaying to {phone_b.uri}") == 1, lines
    for method, least in (("INVITE", 2), ("BYE", 2)):
        authenticated = lines.count(f"authenticated {method} from {TRUNK_USER}")
        assert authenticated >= least, lines
        assert lines.count(f"challenging {method} (auth -5)") == authenticated
        assert len([x for x in lines if x.startswith(f"sent {method} ")]) == (
            authenticated
        )
    assert TRUNK_PASSWORD not in bridge.log()


@pytest.mark.parametrize(
    ("trunk", "username", "password", "status"),
    [
        ("forbid", TRUNK_USER, "not-the-password", 403),
        ("forbid", "someone-else", TRUNK_PASSWORD, 403),
        ("challenge", TRUNK_USER, "not-the-password", 407),
    ],
    ids=["wrong-password", "wrong-username", "wrong-password-challenged-again"],
    indirect=["trunk"],
)
def test_wrong_credentials_fail_with_the_trunks_status(
    trunk: Trunk,
    start_bridge: Callable[..., BridgeProcess],
    phones: Any,
    monkeypatch: pytest.MonkeyPatch,
    username: str,
    password: str,
    status: int,
) -> None:
    # full SIP traces from pjsua too: the password must not leak even there
    monkeypatch.setenv("CAREBRIDGE_SIP_TRACE", "1")
    monkeypatch.setenv("CAREBRIDGE_SIP_LOG", "DEBUG")
    bridge = start_bridge(username=username, password=password)
    host = Host(bridge)
    phone = phones(440.0)
    leg = host.dial(phone.uri, "Nobody")

    entry = host.wait_state(leg, "failed", "rejected")
    assert entry["sip_status"] == status, entry
    assert entry["encrypted"] is False
    assert leg not in {item["leg"] for item in host.roster()["legs"]}
    assert not [e for e in phone.poll_events(0.5) if e.get("type") == "CALL_INCOMING"]

    lines = trunk.lines()
    assert not [line for line in lines if line.startswith("authenticated")], lines
    assert not [line for line in lines if line.startswith("sent ")], lines
    log = bridge.log()
    assert "SIP/2.0 407 Proxy Authentication Required" in log  # the trace ...
    assert f'Proxy-Authorization: Digest username="{username}"' in log
    assert password not in log  # ... and never the password


@pytest.mark.parametrize("scheme", ["sip", "sips"])
def test_the_trunk_sees_the_call_only_over_tls(
    trunk: Trunk,
    start_bridge: Callable[..., BridgeProcess],
    phones: Any,
    scheme: str,
) -> None:
    # "sip:host:port;transport=tls" and "sips:host:port" both mean TLS
    proxy = trunk.uri if scheme == "sip" else f"sips:127.0.0.1:{trunk.port}"
    bridge = start_bridge(proxy=proxy)
    host = Host(bridge)
    phone = phones(500.0)
    leg = host.dial(phone.uri, "Carol")
    host.wait_state(leg, "connected")
    host.expel(leg)
    phone.wait_event("CALL_CLOSED")
    assert wait_for(lambda: "received BYE" in " ".join(trunk.lines()), 5)

    lines = trunk.lines()
    received = [line for line in lines if line.startswith("received ")]
    sent = [line for line in lines if line.startswith("sent ")]
    methods = {line.split()[1] for line in received}
    assert {"INVITE", "ACK", "BYE"} <= methods, lines
    assert all(line.endswith(" over tls") for line in received), received

    # relayed to the phone's TLS port, over TLS
    phone_port = phone.sip_port + 1
    to_phone = [line for line in sent if f"127.0.0.1:{phone_port} " in line]
    assert {line.split()[1] for line in to_phone} >= {"INVITE", "BYE"}, sent
    assert all(line.endswith(" over tls") for line in to_phone), to_phone
