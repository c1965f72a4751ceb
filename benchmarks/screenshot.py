"""Take the README screenshot of the running app with headless Chromium.

    .venv/bin/python benchmarks/screenshot.py docs/screenshot.png [--rag-out docs/screenshot-rag.png]

Starts the real app on a free port, asks one question through the Chat tab
in a real browser (Playwright driving Debian's `chromium`), waits for the
streamed answer and its stats, and saves a PNG.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--hide-scrollbars"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", default="1400,1000")
    ap.add_argument("--path", default="/?__theme=light", help="page to capture")
    ap.add_argument("--question", default="What is the capital of France?")
    ap.add_argument("--locale", default="en-US")
    ap.add_argument("--rag-out", help="also capture the RAG tab answering --rag-question")
    ap.add_argument("--rag-question", default="混合检索为什么用倒数排名融合？k 通常取多少？")
    ap.add_argument("--send", default="Send", help="label of the send button in that locale")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 1
    from _server import served

    with served(quiet=False) as (base, _proc):
        w, h = (int(x) for x in args.size.split(","))
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS[1:])
            page = browser.new_page(viewport={"width": w, "height": h}, locale=args.locale)
            page.goto(base + args.path)
            box = page.get_by_role("textbox").first
            box.wait_for(timeout=60_000)
            box.fill(args.question)
            page.get_by_role("button", name=args.send).first.click()
            page.wait_for_function(
                "() => document.body.innerText.includes('tok/s')", timeout=180_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=os.path.abspath(args.out))
            if args.rag_out:  # the RAG tab: a cited answer from the bundled roadmap index
                page.get_by_role("tab", name="Ask the docs (RAG)").click()
                q = page.get_by_label("Question")
                q.wait_for(timeout=30_000)
                q.fill(args.rag_question)
                page.get_by_role("button", name="Ask", exact=True).click()
                page.wait_for_function("() => document.body.innerText.includes('retrieve')", timeout=300_000)
                page.wait_for_timeout(2000)  # let the finished event repaint (pending output is greyed)
                page.screenshot(path=os.path.abspath(args.rag_out))
            browser.close()
        print(f"wrote {args.out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
