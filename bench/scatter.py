"""EmbeddingScatter at a million points: redraw, hover and lasso times in headless Chromium, CPU raster against
WebGL (regl-scatterplot), and layouts fitted on a sample then placed by transform against a full fit.

- Front end: the widget's own JS (js/src/embedding_scatter.js) in the dev harness with synthetic state
  (js/dev/fixtures/embedding_scatter.mjs), in the Debian Chromium the browser tests use (headless, `--disable-gpu`:
  its WebGL is SwiftShader, a software renderer). Redraw = a wheel zoom or a pan step to the frame after it
  (p50 and p90 over rounds); hover = the nearest-point lookup of one pointer move; lasso = pointer up to the
  selection known.
- The WebGL peer: regl-scatterplot 1.16 (what jupyter-scatter uses) drawing the same number of points in the same
  browser, camera moved per frame, timed to the frame after it with `gl.finish()`. Only when it is installed
  (`npm --prefix js install --no-save regl-scatterplot@1.16.0`; cnnwidgets itself does not depend on it).
- Layouts: 20,000 synthetic clustered 1,280-dim codes (noisy enough that the 5-NN label accuracy is not 1.0),
  t-SNE (openTSNE) and UMAP fitted on all of them, and fitted on a 5,000 sample with the rest placed by
  `transform` (what `cnnwidgets.methods.embed` does beyond FIT_SAMPLE): seconds and 5-NN accuracy; and the
  placement rate (codes/s), which sets how long a million codes take past the sample fit.

    .venv/bin/python bench/run.py scatter

`front_end(counts=(50_000,))` alone takes about a minute.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


from common import machine

JS = Path(__file__).resolve().parent.parent / "js"
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
PORT = 8793
ROUNDS = 30
NOISE = 8.0  # per-dimension noise of the synthetic codes: 5-NN accuracy ~0.86 in 50 PCA dims, so layouts can differ


@contextmanager
def _browser_page(root: Path):
    """A headless Chromium page with `root` served at http://127.0.0.1:PORT/."""
    from playwright.sync_api import sync_playwright

    server = subprocess.Popen([sys.executable, "-m", "http.server", str(PORT), "--bind", "127.0.0.1"], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
            try:
                yield browser.new_page(viewport={"width": 1100, "height": 900})
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait()


# Timings inside the page: wheel zooms and pointer-drag pans, each to the frame after it; hover lookups; a lasso.
MEASURE_JS = """async (rounds) => {
    const canvas = document.querySelector('canvas.cnnw-plot');
    const rect = canvas.getBoundingClientRect();
    const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
    const at = (x, y) => ({ clientX: rect.left + x, clientY: rect.top + y, pointerId: 1, button: 0, bubbles: true, cancelable: true });
    await frame(); await frame();
    const zooms = [];
    for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        canvas.dispatchEvent(new WheelEvent('wheel', { ...at(320, 260), deltaY: i % 2 ? 120 : -120 }));
        await frame();
        zooms.push(performance.now() - t0);
    }
    const pans = [];
    canvas.dispatchEvent(new PointerEvent('pointerdown', at(300, 250)));
    for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        canvas.dispatchEvent(new PointerEvent('pointermove', at(300 + 3 * (i % 10), 250 + 2 * (i % 7))));
        await frame();
        pans.push(performance.now() - t0);
    }
    canvas.dispatchEvent(new PointerEvent('pointerup', at(300, 250)));
    canvas.dispatchEvent(new MouseEvent('dblclick', { bubbles: true }));
    await frame();
    const hovers = [];
    for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        canvas.dispatchEvent(new PointerEvent('pointermove', at(50 + (i * 37) % 540, 40 + (i * 53) % 440)));
        hovers.push(performance.now() - t0);
    }
    const select = document.querySelector('select.cnnw-drag-mode');
    select.value = 'lasso';
    select.dispatchEvent(new Event('change'));
    const ring = Array.from({ length: 24 }, (_, k) => [320 + 150 * Math.cos(k * Math.PI / 12), 260 + 150 * Math.sin(k * Math.PI / 12)]);
    canvas.dispatchEvent(new PointerEvent('pointerdown', at(...ring[0])));
    for (const point of ring.slice(1)) canvas.dispatchEvent(new PointerEvent('pointermove', at(...point)));
    const t0 = performance.now();
    canvas.dispatchEvent(new PointerEvent('pointerup', at(...ring[0])));
    const lasso = performance.now() - t0;
    await new Promise((resolve) => setTimeout(resolve, 500)); // the selected images' thumbnails arrive and show
    await frame();
    const selected = window.harness.model.get('selection').length;
    const selectedZooms = [];
    for (let i = 0; i < 10; i++) {
        const t1 = performance.now();
        canvas.dispatchEvent(new WheelEvent('wheel', { ...at(320, 260), deltaY: i % 2 ? 120 : -120 }));
        await frame();
        selectedZooms.push(performance.now() - t1);
    }
    const sorted = (xs) => xs.slice().sort((a, b) => a - b);
    const pick = (xs, q) => sorted(xs)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
    return { zoom_p50: pick(zooms, 0.5), zoom_p90: pick(zooms, 0.9), pan_p50: pick(pans, 0.5), pan_p90: pick(pans, 0.9),
             hover_p50: pick(hovers, 0.5), hover_max: pick(hovers, 1), lasso_ms: lasso, lasso_selected: selected,
             zoom_with_selection_p50: pick(selectedZooms, 0.5) };
}"""


def front_end(counts: tuple[int, ...] = (50_000, 1_000_000)) -> dict | None:
    """The widget's redraw, pan, hover and lasso times at each count, in the test browser; None without one."""
    if not CHROMIUM.exists() or not (JS / "dev" / "harness.html").exists():
        return None
    results = {}
    with _browser_page(JS) as page:
        for count in counts:
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{PORT}/dev/harness.html?widget=embedding_scatter&count={count}")
            page.wait_for_selector("body[data-rendered=true]", timeout=300_000)
            first_render_s = time.perf_counter() - start
            timings = page.evaluate(MEASURE_JS, ROUNDS)
            results[f"points_{count}"] = {"first_render_s": round(first_render_s, 2),
                                          **{key: round(value, 2) for key, value in timings.items()}}
    return results


WEBGL_JS = """async ({ count, rounds }) => {
    const canvas = document.getElementById('plot');
    const plot = window.createScatterplot({ canvas, width: 640, height: 520, pointSize: 2, performanceMode: count > 100000 });
    const x = new Float32Array(count), y = new Float32Array(count), value = new Float32Array(count);
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < count; i++) {
        const angle = (i % 10) / 10 * 2 * Math.PI;
        x[i] = 0.6 * Math.cos(angle) + (random() - 0.5) * 0.3;
        y[i] = 0.6 * Math.sin(angle) + (random() - 0.5) * 0.3;
        value[i] = i % 10;
    }
    const t0 = performance.now();
    await plot.draw({ x, y, valueA: value });
    const first = performance.now() - t0;
    const gl = plot.get('regl')._gl;
    const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
    await frame(); await frame();
    const times = [];
    for (let i = 0; i < rounds; i++) {
        const t1 = performance.now();
        plot.zoomToLocation([0.1 * (i % 3), 0], 1 + (i % 4) * 0.3, { transition: false });
        await frame();
        gl.finish();
        times.push(performance.now() - t1);
    }
    times.sort((a, b) => a - b);
    return { first_draw_ms: first, redraw_p50: times[Math.floor(rounds / 2)], redraw_p90: times[Math.floor(0.9 * rounds)],
             renderer: gl.getParameter(gl.getExtension('WEBGL_debug_renderer_info')?.UNMASKED_RENDERER_WEBGL ?? gl.RENDERER) };
}"""


def webgl_peer(counts: tuple[int, ...] = (100_000, 1_000_000), rounds: int = 10) -> dict | None:
    """regl-scatterplot's redraw times in the same browser; None when it is not installed under js/node_modules."""
    if not CHROMIUM.exists() or not (JS / "node_modules" / "regl-scatterplot").exists():
        return None
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        entry = "import createScatterplot from 'regl-scatterplot';\nwindow.createScatterplot = createScatterplot;\n"
        esbuild = JS / "node_modules" / ".bin" / "esbuild"
        # the entry comes on stdin, so its imports resolve from js/ (its node_modules)
        subprocess.run([str(esbuild), "--bundle", "--format=iife", f"--outfile={root / 'bundle.js'}", "--log-level=warning"],
                       input=entry, text=True, check=True, cwd=JS)
        (root / "index.html").write_text('<!doctype html><canvas id="plot" width="640" height="520"></canvas>'
                                          '<script src="bundle.js"></script>')
        results = {}
        with _browser_page(root) as page:
            for count in counts:
                page.goto(f"http://127.0.0.1:{PORT}/index.html")
                timings = page.evaluate(WEBGL_JS, {"count": count, "rounds": rounds})
                results[f"points_{count}"] = {key: round(value, 1) if isinstance(value, float) else value
                                              for key, value in timings.items()}
    version = (JS / "node_modules" / "regl-scatterplot" / "package.json").read_text()
    results["version"] = json.loads(version)["version"]
    return results


def layouts(count: int = 20_000, sample: int = 5_000, placement: int = 50_000) -> dict:
    """Full fit against sample fit + transform on `count` codes (seconds, 5-NN accuracy), per method; and the
    placement rate measured on `placement` more codes."""
    from dataset_views import _clusters, _knn_accuracy

    from cnnwidgets.methods.embed import tsne, umap

    codes, labels = _clusters(count, noise=NOISE)
    methods = {"tsne_openTSNE": tsne}
    if importlib.util.find_spec("umap") is not None:
        methods["umap"] = umap
        umap(_clusters(500, 64)[0], progress=lambda *_: None)  # numba compiles on the first fit: not timed
    results: dict[str, dict] = {}
    for name, method in methods.items():
        row = {}
        for kind, fit_on in {"full_fit": count, f"fit_{sample}_transform_rest": sample}.items():
            start = time.perf_counter()
            layout = method(codes, progress=lambda *_: None, sample=fit_on)
            row[kind] = {"seconds": round(time.perf_counter() - start, 1), "knn5_accuracy": round(_knn_accuracy(layout, labels), 4)}
        results[name] = row
    more, _ = _clusters(sample + placement, seed=1, noise=NOISE)
    start = time.perf_counter()
    tsne(more, progress=lambda *_: None, sample=sample)
    seconds = time.perf_counter() - start
    fit_seconds = results["tsne_openTSNE"][f"fit_{sample}_transform_rest"]["seconds"] * sample / count  # about
    results["tsne_placement"] = {"codes": sample + placement, "seconds": round(seconds, 1),
                                 "placed_per_s_about": round(placement / max(seconds - fit_seconds, 1e-3)),
                                 "note": "fit on the sample, then the rest placed by TSNEEmbedding.transform"}
    return results


def run() -> dict:
    return {
        "name": "scatter",
        "front_end": front_end(),
        "webgl_peer_regl_scatterplot": webgl_peer(),
        "layouts_20000": layouts(),
        "note": "2-core CPU shared with other jobs while measured; front end = the widget's JS in the dev harness "
                "with synthetic points; Debian Chromium headless (--disable-gpu: WebGL is SwiftShader)",
        "machine": machine(),
    }
