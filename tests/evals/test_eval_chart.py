"""The PNG chart decodes (chunk CRCs, size, pixels) and shows the bars where the pass rates put them."""
import struct
import zlib

from evals_synthetic import outcomes, write_run
from tinygpt.evals import chart
from tinygpt.evals.gate import evaluate
from tinygpt.evals.png import SIGNATURE, Canvas, encode, software_of
from tinygpt.evals.results import read_results


def decode_png(data: bytes):
    """(width, height, rows of RGB tuples, text chunks) of an 8-bit RGB PNG, checking every chunk's CRC."""
    assert data.startswith(SIGNATURE)
    at, idat, text, header = len(SIGNATURE), b"", {}, None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, value = body.split(b"\x00", 1)
            text[key.decode()] = value.decode("latin-1")
        at += 12 + length
        if kind == b"IEND":
            break
    assert at == len(data)
    width, height, depth, color, _, _, interlace = header
    assert (depth, color, interlace) == (8, 2, 0)
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    assert len(raw) == stride * height
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0  # filter type None
        rows.append([tuple(line[1 + 3 * x:4 + 3 * x]) for x in range(width)])
    return width, height, rows, text


def test_a_canvas_round_trips_through_png():
    canvas = Canvas(7, 5, background=(1, 2, 3))
    canvas.rect(2, 1, 4, 3, (200, 100, 50))
    width, height, rows, text = decode_png(encode(canvas, "tinygpt test"))
    assert (width, height, text) == (7, 5, {"Software": "tinygpt test"})
    assert rows[1][2] == rows[2][3] == (200, 100, 50) and rows[0][0] == rows[3][2] == rows[1][4] == (1, 2, 3)
    assert software_of(encode(canvas, "x")) == "x" and software_of(b"GIF89a") is None


def test_the_gate_chart_has_its_size_and_bars(tmp_path):
    cand, base = outcomes(40, 12, 0, 10)  # baseline 25%, candidate 55%
    write_run(tmp_path, model="spec", outcomes=cand, fingerprint="B+A")
    write_run(tmp_path, model="base", outcomes=base, fingerprint="B")
    result = evaluate(read_results(tmp_path), candidate="spec", baseline="base", suites=["fileops"])
    data = chart.chart_png(result)
    width, height, rows, text = decode_png(data)
    groups = chart.groups(result)
    assert len(groups) == 2  # the suite and its one category
    assert (width, height) == chart.size(2) and text["Software"] == chart.SOFTWARE
    mid = chart.group_x(0) + chart.GROUP_W // 2
    base_x, cand_x = mid - chart.BAR_W - 2 + 3, mid + 2 + 3  # inside each bar, clear of the whisker
    suite = result.suites[0]
    for x, rate, color in ((base_x, suite.baseline.rate, chart.BASELINE), (cand_x, suite.candidate.rate,
                                                                            chart.CANDIDATE)):
        top = chart.rate_y(rate)
        assert rows[top + 1][x] == color and rows[chart.rate_y(0) - 1][x] == color
        assert rows[top - 2][x] != color  # the bar ends at its pass rate
    # the whisker spans the candidate's interval
    whisker_x = mid + 2 + chart.BAR_W // 2
    assert rows[chart.rate_y(suite.candidate.hi) + 1][whisker_x] == chart.INK
    assert rows[chart.rate_y(suite.candidate.lo) - 1][whisker_x] == chart.INK
    # the difference marker sits at +30 points in the lower panel
    span = chart.diff_span(result)
    assert rows[chart.diff_y(suite.diff.estimate, span)][mid + 3] == chart.CANDIDATE
