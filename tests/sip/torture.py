"""SIP torture material for the worker's listeners: RFC 4475 and PROTOS c07-sip.

The corpora live outside the repository, in ``../shared/testdata/sip-torture``
(or ``$CAREBRIDGE_SIP_TORTURE``), and are used as published.

- :data:`RFC4475` names each of the 49 messages of RFC 4475 with its section
  and what the RFC expects of a receiving element; :func:`send_tls` sends one
  message on its own TLS connection and collects the status codes that come
  back on that connection.
- :func:`protos_groups` splits the PROTOS c07-sip cases into groups of
  consecutive cases that alter the same part of the valid INVITE (case 0), and
  :func:`protos_selection` picks a few runs of consecutive cases from each;
  :func:`run_protos` runs the suite's own Java driver on a range (of the whole
  suite, or of a subset jar from :func:`write_subset_jar`) and reads its
  verdict on every valid case it sent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORTURE_DIR = os.environ.get(
    "CAREBRIDGE_SIP_TORTURE",
    os.path.join(os.path.dirname(_REPO), "shared", "testdata", "sip-torture"),
)
RFC4475_DIR = os.path.join(TORTURE_DIR, "rfc4475")
PROTOS_JAR = os.path.join(TORTURE_DIR, "protos-c07", "c07-sip-r2.jar")
JAVA = shutil.which("java")

#: what RFC 4475 asks of an element receiving the message
VALID = "valid"  # well formed: must be parsed and handled (section 3.1.1 etc.)
INVALID = "invalid"  # malformed: an error response (usually 400) or dropped
REFUSE = "refuse"  # well formed, but the RFC expects an error response
LENIENT = "lenient"  # malformed, but the RFC lets a liberal parser accept it


@dataclass(frozen=True)
class TortureCase:
    section: str
    title: str
    verdict: str
    #: the answer the RFC describes, for the report ("" for responses)
    expected: str = ""


# RFC 4475, sections 3.1.1 to 3.4.1; file names as in the corpus
RFC4475: dict[str, TortureCase] = {
    "wsinv": TortureCase("3.1.1.1", "short tortuous INVITE", VALID),
    "intmeth": TortureCase("3.1.1.2", "wide range of valid characters", VALID),
    "esc01": TortureCase("3.1.1.3", "valid use of % escaping", VALID),
    "escnull": TortureCase("3.1.1.4", "escaped nulls in URIs", VALID),
    "esc02": TortureCase("3.1.1.5", "% that is not an escape", VALID),
    "lwsdisp": TortureCase("3.1.1.6", "no LWS between display name and <", VALID),
    "longreq": TortureCase("3.1.1.7", "long values in header fields", VALID),
    "dblreq": TortureCase("3.1.1.8", "extra trailing octets", VALID),
    "semiuri": TortureCase("3.1.1.9", "semicolons in URI user part", VALID),
    "transports": TortureCase("3.1.1.10", "varied and unknown transports", VALID),
    "mpart01": TortureCase("3.1.1.11", "multipart MIME message", VALID),
    "unreason": TortureCase("3.1.1.12", "unusual reason phrase (response)", VALID),
    "noreason": TortureCase("3.1.1.13", "empty reason phrase (response)", VALID),
    "badinv01": TortureCase("3.1.2.1", "extraneous header separators", INVALID, "400"),
    "clerr": TortureCase("3.1.2.2", "Content-Length larger than message", INVALID),
    "ncl": TortureCase("3.1.2.3", "negative Content-Length", INVALID, "400"),
    "scalar02": TortureCase("3.1.2.4", "overlarge request scalars", INVALID, "400"),
    "scalarlg": TortureCase("3.1.2.5", "overlarge response scalars", INVALID),
    "quotbal": TortureCase("3.1.2.6", "unterminated quoted string", INVALID, "400"),
    "ltgtruri": TortureCase("3.1.2.7", "<> around Request-URI", INVALID, "400"),
    "lwsruri": TortureCase("3.1.2.8", "LWS inside Request-URI", INVALID, "400"),
    "lwsstart": TortureCase("3.1.2.9", "multiple SP in Request-Line", LENIENT, "400"),
    "trws": TortureCase("3.1.2.10", "SP at end of Request-Line", LENIENT, "400"),
    "escruri": TortureCase("3.1.2.11", "escaped headers in Request-URI", INVALID),
    "baddate": TortureCase("3.1.2.12", "invalid time zone in Date", INVALID, "400"),
    "regbadct": TortureCase("3.1.2.13", "name-addr URI without <>", INVALID, "400"),
    "badaspec": TortureCase("3.1.2.14", "spaces within addr-spec", LENIENT, "400"),
    "baddn": TortureCase("3.1.2.15", "non-token display name", LENIENT, "400"),
    "badvers": TortureCase("3.1.2.16", "unknown protocol version", INVALID, "505"),
    "mismatch01": TortureCase("3.1.2.17", "CSeq method mismatch", INVALID, "400"),
    "mismatch02": TortureCase("3.1.2.18", "unknown method, CSeq mismatch", INVALID),
    "bigcode": TortureCase("3.1.2.19", "overlarge response code", INVALID),
    "badbranch": TortureCase("3.2.1", "missing transaction identifier", VALID),
    "insuf": TortureCase("3.3.1", "missing required header fields", REFUSE, "400"),
    "unkscm": TortureCase("3.3.2", "Request-URI with unknown scheme", REFUSE, "416"),
    "novelsc": TortureCase("3.3.3", "known but atypical scheme", REFUSE, "416"),
    "unksm2": TortureCase("3.3.4", "unknown URI schemes in headers", VALID),
    "bext01": TortureCase("3.3.5", "Proxy-Require and Require", REFUSE, "420"),
    "invut": TortureCase("3.3.6", "unknown Content-Type", REFUSE, "415"),
    "regaut01": TortureCase("3.3.7", "unknown authorization scheme", VALID),
    "multi01": TortureCase("3.3.8", "multiple single-value fields", REFUSE, "400"),
    "mcl01": TortureCase("3.3.9", "multiple Content-Length values", REFUSE, "400"),
    "bcast": TortureCase("3.3.10", "200 OK with broadcast Via", INVALID),
    "zeromf": TortureCase("3.3.11", "Max-Forwards of zero", VALID),
    "cparam01": TortureCase("3.3.12", "REGISTER, Contact parameter", VALID),
    "cparam02": TortureCase("3.3.13", "REGISTER, url-parameter", VALID),
    "regescrt": TortureCase("3.3.14", "REGISTER, escaped header in URL", VALID),
    "sdp01": TortureCase("3.3.15", "unacceptable Accept", REFUSE, "406"),
    "inv2543": TortureCase("3.4.1", "INVITE with RFC 2543 syntax", VALID),
}

_STATUS_LINE = re.compile(rb"^SIP/2\.0 (\d{3}) ", re.MULTILINE)


_MAGIC_BRANCH = re.compile(rb"(branch\s*=\s*z9hG4bK)", re.IGNORECASE)


def rfc4475_messages(tag: str | None = None) -> dict[str, bytes]:
    """Every message of the corpus by name, as published (CRLF kept).

    With ``tag``, each RFC 3261 branch (``z9hG4bK...``) gets ``tag`` and the
    message's index after its magic cookie, and nothing else changes.  The
    corpus reuses branches (``z9hG4bKkdjuw`` in 30 messages) and pjsip keys a
    server transaction on method and branch alone, so without this a message
    is taken for a retransmission of an earlier one and its answer is lost.
    """
    out = {}
    for index, name in enumerate(sorted(RFC4475)):
        with open(os.path.join(RFC4475_DIR, name + ".dat"), "rb") as f:
            data = f.read()
        if tag is not None:
            unique = rb"\g<1>" + f"{tag}{index}x".encode()
            data = _MAGIC_BRANCH.sub(unique, data)
        out[name] = data
    return out


@dataclass
class Answer:
    """What came back on one message's own connection."""

    statuses: list[int] = field(default_factory=list)
    #: the connection was closed by the worker before we gave up waiting
    closed: bool = False
    #: a TLS or socket error that ended the wait, if any
    error: str | None = None

    @property
    def final(self) -> int | None:
        finals = [s for s in self.statuses if s >= 200]
        return finals[-1] if finals else None

    def describe(self) -> str:
        if self.error is not None:
            return f"{'/'.join(map(str, self.statuses)) or 'nothing'} ({self.error})"
        if not self.statuses:
            return "closed" if self.closed else "silent"
        return "/".join(map(str, self.statuses))


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context that verifies the worker's certificate."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # pjsua's OpenSSL 1.0.2k
    return ctx


def send_tls(
    port: int,
    message: bytes,
    context: ssl.SSLContext,
    *,
    quiet: float = 1.0,
    linger: float = 0.3,
    limit: float = 4.0,
) -> Answer:
    """Send ``message`` on a new TLS connection to 127.0.0.1:``port``.

    A connection of its own keeps one message's framing (a wrong
    Content-Length) from swallowing the next.  Reads until the peer closes,
    ``quiet`` seconds pass without a byte (``linger`` once a final response
    has come: a message may hold two requests), or ``limit`` seconds in all.
    Only status lines are looked at: the responses come from pjsip's printer.
    """
    answer = Answer()
    data = b""
    deadline = time.monotonic() + limit
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(message)
            while (left := deadline - time.monotonic()) > 0:
                wait = quiet if answer.final is None else linger
                sock.settimeout(min(wait, left))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                except (ssl.SSLError, ConnectionError) as exc:
                    answer.error = f"{type(exc).__name__}: {exc}"
                    break
                if not chunk:
                    answer.closed = True
                    break
                data += chunk
                answer.statuses = [int(m) for m in _STATUS_LINE.findall(data)]
    return answer


# -- PROTOS c07-sip ------------------------------------------------------------------

#: case 0 is the valid INVITE every other case is a mutation of
PROTOS_CASES = 4527


def _valid_for(valid: bytes, case: int) -> bytes:
    # case 0 as case ``case`` would carry it: the case number is in the Via
    # branch, the From and Contact display names, the tag and the SDP origin
    for old, new in (
        (b"z9hG4bK00000", b"z9hG4bK0000%d" % case),
        (b"From: 0 <", b"From: %d <" % case),
        (b"tag=0\r", b"tag=%d\r" % case),
        (b"Contact: 0 <", b"Contact: %d <" % case),
        (b"o=0 0 0 ", b"o=%d %d %d " % (case, case, case)),
    ):
        valid = valid.replace(old, new, 1)
    return valid


def protos_groups(jar: str = PROTOS_JAR) -> list[tuple[int, int]]:
    """Runs ``(first, last)`` of consecutive cases that alter the same line.

    The line is the one of case 0's INVITE where the case first differs from
    it; the runs come close to the suite's own groups (method, Request-URI,
    version, each header, CRLFs, each SDP line).
    """
    with zipfile.ZipFile(jar) as zf:
        names = sorted(n for n in zf.namelist() if re.fullmatch(r"testcases/\d+", n))

        def invite(name: str) -> bytes:
            # a case file holds "<size> <INVITE>" and then the teardown
            blob = zf.read(name)
            size, _, rest = blob.partition(b" ")
            return rest[: int(size)]

        valid = invite(names[0])
        keys = []
        for name in names[1:]:
            case = int(name.rsplit("/", 1)[1])
            expected, got = _valid_for(valid, case), invite(name)
            common = min(len(expected), len(got))
            at = next((i for i in range(common) if expected[i] != got[i]), common)
            keys.append((case, expected.count(b"\n", 0, at)))
    runs: list[tuple[int, int]] = []
    start, prev_key = keys[0]
    prev = start
    for case, key in keys[1:]:
        if key != prev_key or case != prev + 1:
            runs.append((start, prev))
            start = case
        prev, prev_key = case, key
    runs.append((start, prev))
    return runs


def protos_selection(
    groups: list[tuple[int, int]], per_group: int = 3, length: int = 4
) -> list[int]:
    """``per_group`` runs of ``length`` cases spread evenly over each group.

    The suite mutates each field with the same families of values in the same
    order (overflows, format strings, bad characters...), so runs at the
    start, middle and end of a group reach different families.
    """
    out: list[int] = []
    for first, last in groups:
        size = last - first + 1
        if size <= per_group * length:
            out.extend(range(first, last + 1))
            continue
        span = size - length
        for i in range(per_group):
            start = first + round(i * span / (per_group - 1))
            out.extend(range(start, start + length))
    return out


def write_subset_jar(cases: list[int], path: str, jar: str = PROTOS_JAR) -> str:
    """A jar of case 0 and ``cases`` renumbered 1..n, for the driver's -jarfile.

    The cases are copied byte for byte.  One run of the driver over a subset
    beats one run per slice: each run numbers its Via branches from 0 again,
    and pjsip, which keys a server transaction on method and branch alone,
    swallows a run's valid cases as retransmissions of the last run's for
    T4 (5 s) while the driver backs off and retries.
    """
    with zipfile.ZipFile(jar) as src, zipfile.ZipFile(path, "w") as dst:
        dst.writestr("testcases/0000000", src.read("testcases/0000000"))
        for index, case in enumerate(cases, 1):
            dst.writestr(f"testcases/{index:07d}", src.read(f"testcases/{case:07d}"))
    return path


@dataclass
class ProtosRun:
    """What the driver reported for a range of cases."""

    first: int
    last: int
    #: the driver's exit status; None if it was killed at the time bound
    returncode: int | None
    output: str = ""
    #: status codes the malformed INVITE of each case got (empty: dropped)
    replies: dict[int, list[int]] = field(default_factory=dict)
    #: the cases whose following valid INVITE was answered, and was not
    valid_answered: list[int] = field(default_factory=list)
    valid_unanswered: list[int] = field(default_factory=list)
    #: "No reply to valid INVITE ... Retrying" lines (a reply came too late)
    valid_retries: int = 0

    @property
    def sent(self) -> list[int]:
        return sorted(self.replies)


_TEST_CASE = re.compile(r"^Sending Test-Case #(\d+)")
_RETURN_CODE = re.compile(r"^\s*Received Returncode: (\d+)")


def parse_protos_output(run: ProtosRun) -> None:
    """Fill in replies and valid-case verdicts from the driver's output.

    The driver prints ``Sending Test-Case #N``, the return codes it got,
    ``Sending CANCEL``/``Sending ACK`` for the teardown, then ``Sending
    valid-case`` and the codes for case 0 sent again; without a reply it
    prints ``No reply to valid INVITE ...  Retrying...`` and sends it again,
    for ever.
    """
    case = 0
    part = "start"
    valid_ok: bool | None = None

    def close_valid() -> None:
        if valid_ok is not None:
            (run.valid_answered if valid_ok else run.valid_unanswered).append(case)

    for line in run.output.splitlines():
        if m := _TEST_CASE.match(line):
            close_valid()
            valid_ok = None
            case = int(m.group(1))
            run.replies[case] = []
            part = "test"
        elif line.startswith("Sending valid-case"):
            close_valid()
            valid_ok = False
            part = "valid"
        elif line.startswith((" Sending CANCEL", " Sending ACK")):
            part = "teardown" if part == "test" else part
        elif "No reply to valid INVITE" in line:
            run.valid_retries += 1
        elif m := _RETURN_CODE.match(line):
            if part == "test":
                run.replies[case].append(int(m.group(1)))
            elif part == "valid":
                valid_ok = True
    close_valid()


def protos_command(
    first: int,
    last: int,
    *,
    touri: str,
    dport: int,
    lport: int,
    delay_ms: int = 10,
    replywait_ms: int = 20,
    jarfile: str | None = None,
) -> list[str]:
    """The driver's command line for cases ``first``..``last`` (of ``jarfile``).

    ``file.encoding=ISO-8859-1`` keeps every byte of a case as it is: under
    Java 17's UTF-8 default the driver mangles non-UTF-8 bytes and dies on
    case 28 (``StringIndexOutOfBoundsException`` in ``SIPBugCat.limit``).
    """
    return [
        JAVA or "java",
        "-Dfile.encoding=ISO-8859-1",
        "-jar",
        PROTOS_JAR,
        "-touri",
        touri,
        "-dport",
        str(dport),
        "-lport",
        str(lport),
        "-teardown",
        "-validcase",
        "-delay",
        str(delay_ms),
        "-replywait",
        str(replywait_ms),
        *(["-jarfile", jarfile] if jarfile else []),
        "-start",
        str(first),
        "-stop",
        str(last),
    ]


def run_protos(first: int, last: int, *, timeout: float, **kwargs: Any) -> ProtosRun:
    """Run the driver on cases ``first``..``last``, killed after ``timeout`` s."""
    proc = subprocess.Popen(
        protos_command(first, last, **kwargs),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        returncode = None
    run = ProtosRun(first, last, returncode, out.decode("latin-1"))
    parse_protos_output(run)
    return run
