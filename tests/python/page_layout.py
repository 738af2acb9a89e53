"""How a report page looks in headless Chromium at a given window width: whether the page
itself scrolls sideways, and whether every table wider than the window sits in a box that
scrolls it (so that every column can be read). Used by the report and quickstart tests."""
import json
import re
import shutil
import subprocess

PROBE = """<script>
window.addEventListener('load', () => {
  const W = document.documentElement.clientWidth;
  const out = {width: W, page_scrolls: document.documentElement.scrollWidth > W + 1, tables: 0, wide: 0, unreadable: []};
  for (const t of document.querySelectorAll('table')) {
    out.tables++;
    const r = t.getBoundingClientRect();
    if (r.right <= W + 1) continue;
    out.wide++;
    let a = t.parentElement, ok = false;
    while (a && a !== document.body) {
      const s = getComputedStyle(a);
      if ((s.overflowX === 'auto' || s.overflowX === 'scroll') && a.getBoundingClientRect().right <= W + 1 &&
          a.scrollWidth >= r.width - 1) { ok = true; break; }
      a = a.parentElement;
    }
    if (!ok) out.unreadable.push(t.getAttribute('data-id') || String(out.tables));
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def layout(html_path, width, tmp_path, screenshot=None):
    """{width, page_scrolls, tables, wide, unreadable} of the page at `width` px; with
    `screenshot`, also a PNG of the page as a person would see it."""
    page = tmp_path / ("probe-" + html_path.name)
    page.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={width},1000"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=180)
    m = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, dom.stderr[-2000:]
    if screenshot:
        subprocess.run([chromium(), *flags, f"--screenshot={screenshot}", html_path.as_uri()], capture_output=True,
                       timeout=180)
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
