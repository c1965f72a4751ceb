"""Real documents for the RAG tests (imported by the other test_rag_* files), in English and Chinese, and writers for
the binary formats (a minimal PDF with a text layer, a .docx)."""

from __future__ import annotations

from pathlib import Path

BEES = """# Beekeeping basics

## Winter

Honey bees do not hibernate. In winter the workers form a tight cluster around the queen and shiver their flight
muscles to make heat, keeping the centre of the cluster near 35 degrees Celsius. The colony eats its stored honey
to fuel this work, so a beekeeper leaves at least 20 kilograms of honey in the hive before the cold season.

## Swarming

In spring a strong colony may swarm: the old queen leaves with about half of the workers to found a new nest.
Beekeepers prevent swarming by giving the colony more space and by removing queen cells.
"""

VOLCANOES = """<html><head><title>Volcanoes</title></head><body>
<h1>Volcanoes</h1>
<h2>Lava types</h2>
<p>Basaltic lava is runny because it holds little silica; it flows in long rivers, as on Hawaii.
Rhyolitic lava is thick and sticky, traps gas, and tends to explode.</p>
<h2>Monitoring</h2>
<p>Scientists watch volcanoes with seismometers, tiltmeters and gas sensors. A swarm of small earthquakes
often comes before an eruption.</p>
</body></html>"""

SOURDOUGH = """Sourdough bread

A sourdough starter is a mix of flour and water in which wild yeast and lactic acid bacteria live.
Feed the starter every day with equal weights of flour and water. It is ready to bake with when it doubles
in size within six hours of feeding. The long fermentation gives the bread its sour taste and open crumb.
"""

TEA = """# 中国茶

## 绿茶

绿茶不经过发酵，最有名的是西湖龙井和碧螺春。冲泡绿茶的水温以八十度左右为宜，水太烫会把茶叶泡熟，味道发苦。

## 乌龙茶

乌龙茶是半发酵茶，主要产自福建和台湾。铁观音和大红袍都属于乌龙茶。
"""

GREAT_WALL = """长城

长城是中国古代修建的军事防御工程，东起山海关，西至嘉峪关。现在看到的长城大多是明朝修建的，全长八千多公里。
修建长城用的材料因地制宜：山区用石头，平原用夯土和砖。
"""

PANDA_PARAS = ["大熊猫生活在四川、陕西和甘肃的山区竹林里。",
               "大熊猫的食物几乎全是竹子，每天要吃十二到三十八公斤竹子，花十个小时以上进食。",
               "野生大熊猫大约有一千八百只。"]

SOLAR_PAGES = ["Solar panels. A solar panel turns sunlight into electricity with silicon cells.",
               "Panels facing south at an angle close to the local latitude collect the most energy in a year."]


def write_corpus(folder: Path) -> Path:
    """Two-language corpus: md, html, txt, pdf (English); md, GBK txt, docx (Chinese)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bees.md").write_text(BEES, encoding="utf-8")
    (folder / "volcanoes.html").write_text(VOLCANOES, encoding="utf-8")
    (folder / "sourdough.txt").write_text(SOURDOUGH, encoding="utf-8")
    make_pdf(folder / "solar.pdf", SOLAR_PAGES)
    zh = folder / "zh"
    zh.mkdir(exist_ok=True)
    (zh / "tea.md").write_text(TEA, encoding="utf-8")
    (zh / "great_wall.txt").write_bytes(GREAT_WALL.encode("gb18030"))  # not UTF-8
    make_docx(zh / "panda.docx", "大熊猫", PANDA_PARAS)
    return folder


def make_pdf(path: Path, pages: list[str | None]) -> Path:
    """A minimal PDF; each page has one line of Helvetica text, or none (None: like a scan)."""
    objs: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        if text is None:
            stream = b"q Q"
        else:
            esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            stream = f"BT /F1 10 Tf 20 700 Td ({esc}) Tj ET".encode("latin-1")
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_id = len(objs)
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                    b"/Contents %d 0 R >>" % content_id)
        kids.append(len(objs))
    objs[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(out)
    return path


def make_docx(path: Path, title: str, paragraphs: list[str]) -> Path:
    import docx

    d = docx.Document()
    d.add_heading(title, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    d.save(str(path))
    return path


def test_the_writers_make_readable_files(tmp_path):
    from pypdf import PdfReader

    pdf = make_pdf(tmp_path / "x.pdf", ["Hello (world)", None])
    reader = PdfReader(str(pdf))
    assert "Hello (world)" in reader.pages[0].extract_text() and not reader.pages[1].extract_text().strip()
    import docx

    assert docx.Document(str(make_docx(tmp_path / "x.docx", "T", ["p"]))).paragraphs[1].text == "p"
