"""SPEC.md's test vectors: the library must produce and accept exactly these bytes."""
from spot import frame, messages
from spot.errors import NAMES, SpotError

from receiver import receive
from vector_cases import valid

_CODES = dict((name, code) for code, name in NAMES.items())


def _spec_path():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return here + "/../../lib/spot/SPEC.md"


def spec_vectors():
    """[(name, expected outcome, bytes)] from the ```spot-vectors blocks of SPEC.md."""
    out = []
    inside = False
    with open(_spec_path()) as f:
        for line in f:
            line = line.strip()
            if line.startswith("```"):
                inside = line == "```spot-vectors"
                continue
            if inside and line and not line.startswith("#"):
                name, outcome, hx = line.split(None, 2)
                out.append((name, outcome, bytes.fromhex(hx.replace(" ", ""))))
    return out


def test_spec_has_a_vector_for_every_message_kind():
    vectors = spec_vectors()
    classes = set()
    for name, outcome, raw in vectors:
        if outcome == "ok":
            classes.add(frame.decode(raw).cls)
    for c in (frame.CLASS_COMMAND, frame.CLASS_INFO, frame.CLASS_REPORT, frame.CLASS_ACK,
              frame.CLASS_TIMESYNC, frame.CLASS_DISCOVERY):
        assert c in classes, c


def test_secured_vectors_verify_and_decrypt():
    for name, outcome, raw in spec_vectors():
        if outcome != "ok":
            continue
        f = receive(raw)
        body = messages.read_payload(f)
        if name == "report-meter-encrypted":
            assert f.flags & frame.FLAG_ENCRYPTED and body[messages.K_MR_RELAY] is True


def test_library_builds_the_spec_bytes():
    spec = dict((name, raw) for name, outcome, raw in spec_vectors() if outcome == "ok")
    for name, raw in valid():
        assert name in spec, name
        assert spec[name] == raw, (name, raw.hex())


def test_invalid_vectors_are_refused_with_their_code():
    seen = 0
    for name, outcome, raw in spec_vectors():
        if outcome == "ok":
            messages.read_payload(receive(raw))
            continue
        want = _CODES[outcome.replace("-", " ")]
        try:
            messages.read_payload(receive(raw))
        except SpotError as e:
            assert e.code == want, (name, NAMES.get(e.code))
        else:
            raise AssertionError(name + " accepted")
        seen += 1
    assert seen >= 12
