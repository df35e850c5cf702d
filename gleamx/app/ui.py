"""The Gradio page of ``gleamx app``: a Verify tab and a Localize tab over one :class:`~gleamx.app.engine.Engine`.

Safe to expose by default: it listens on 127.0.0.1 unless ``--host`` says otherwise, makes no public link
unless ``--share``, takes uploads as bytes (``gr.File(type="binary")``: gradio stores the upload in its own
folder and hands over its content; the app opens no path a user sends, and gradio itself accepts only
files in its upload folder as inputs), refuses an upload over ``--max-upload-mb`` at the upload route and
again in the engine, checks the pixel count from the header before decoding, and answers every bad input
with a one-line message (``gr.Error``), never a traceback. Every model call shares one queue slot
(``concurrency_id="model"``, limit 1): two users never run the model at once.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from gleamx.app.assets import Assets, resolve
from gleamx.app.config import LOOPBACK, AppConfig
from gleamx.app.engine import Candidate, Engine, UploadError, Verification
from gleamx.choices import LANGS, TASKS, VIEWS
from gleamx.console import console
from gleamx.data.images import open_image
from gleamx.errors import GleamError

VERDICT_TEXT = {True: "Yes: the same place", False: "No: different places",
                None: "no verdict: the answer has no verdict line"}
WORKING = "…"
N_EXAMPLES = 6
PREVIEW_SIDE = 384
TRUE_MARK = "(true tile)"  # the candidate at the query's own location, when the app knows it (an example query)
TABLE_HEADERS = ["rank (verified)", "rank (retrieval)", "tile", "similarity", "verdict", "P(yes)", "answer"]


def verdict_text(verdict: bool | None) -> str:
    """What the Verdict field shows for a parsed verdict."""
    return VERDICT_TEXT[verdict]


def p_yes_value(p: float | None) -> dict[str, float] | None:
    """P(yes) as the ``gr.Label`` bars (``None``: no verdict line, so no P(yes))."""
    return None if p is None else {"yes": float(p), "no": 1.0 - float(p)}


def _preview(image: Any) -> Any:
    thumb = image.copy()
    thumb.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return thumb


# --- examples ---------------------------------------------------------------------------------------------


def verify_examples(assets: Assets) -> list[list[Any]]:
    """Pairs of the generated test split: a matching and a non-matching one for each view first."""
    from gleamx.data import load_samples

    samples = load_samples(assets.examples, split="test").samples
    picked: list[Any] = []
    for label in (True, False):
        for view in VIEWS:
            s = next((s for s in samples if s.query_view == view and s.label is label and s not in picked), None)
            if s is not None:
                picked.append(s)
    picked = sorted(picked[:N_EXAMPLES], key=lambda s: (VIEWS.index(s.query_view), not s.label))
    # Each image twice: the preview (its thumbnail is what the examples table shows) and the file the model reads.
    # The table keys its columns by label, so every input's label differs ("Query preview", "Query view image").
    return [[s.query_image, s.query_image, s.query_view, s.satellite_image, s.satellite_image] for s in picked]


def localize_examples(engine: Engine) -> list[list[Any]]:
    """One query per view from the gallery's own split (their tile is in the gallery)."""
    if not engine.can_localize:
        return []
    picked: dict[str, Any] = {}
    for view in VIEWS:  # one query per view, each at another location while there are locations left
        of_view = [q for q in engine.gallery.queries if q.view == view]
        used = {q.location_id for q in picked.values()}
        q = next((q for q in of_view if q.location_id not in used), of_view[0] if of_view else None)
        if q is not None:
            picked[view] = q
    return [[str(q.image), str(q.image), q.view] for q in picked.values()]  # preview (thumbnail) and file


# --- event handlers ---------------------------------------------------------------------------------------


@dataclass
class Handlers:
    """The functions behind the page's events (plain generators: also callable without a browser)."""

    engine: Engine
    _known_queries: dict[str, str] | None = field(default=None, repr=False)

    def true_location(self, query: bytes | None) -> str | None:
        """The location of an uploaded query that is one of the gallery split's own query images (the Localize
        examples), by content; ``None`` for any other image (its true tile is unknown)."""
        if query is None or not self.engine.can_localize:
            return None
        if self._known_queries is None:
            self._known_queries = {}
            for q in self.engine.gallery.queries:
                try:
                    self._known_queries[hashlib.sha256(Path(q.image).read_bytes()).hexdigest()] = q.location_id
                except OSError:
                    continue
        return self._known_queries.get(hashlib.sha256(query).hexdigest())

    def preview(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return _preview(self.engine.image(data, "image"))
        except UploadError as e:
            gr.Warning(str(e))
            return None

    def verify(self, query: bytes | None, view: str, satellite: bytes | None, lang: str, task: str
               ) -> Iterator[tuple[str, str, Any, float | None]]:
        """Stream the answer; end with the answer, the verdict, P(yes) as bars and as a number."""
        try:
            pair = self.engine.pair(query, satellite, view)
            yield "", WORKING, None, None
            for step in self.engine.verify_stream(pair, lang, task):
                if isinstance(step, Verification):
                    yield step.answer, verdict_text(step.verdict), p_yes_value(step.p_yes), step.p_yes
                else:
                    yield step, WORKING, None, None
        except GleamError as e:  # bad upload or choice, a model that cannot take the input: one line
            raise gr.Error(str(e), print_exception=False) from None

    def localize(self, query: bytes | None, view: str, lang: str, task: str, k: float
                 ) -> Iterator[tuple[list[tuple[Any, str]], list[list[Any]], str]]:
        """Stream the candidates as they are verified; end with them reranked."""
        try:
            image = self.engine.image(query, "query image")
            truth = self.true_location(query)
            n = 0
            for cands in self.engine.localize_stream(image, view, lang, task, int(k)):
                n = len(cands)
                done = sum(c.verification is not None for c in cands)
                reranked = all(c.rank is not None for c in cands)
                status = (f"{n} candidates reranked by the model's verdict, then P(yes), then retrieval"
                          if reranked else f"verifying the top {n} tiles: {done} of {n} done")
                if truth is not None:
                    found = any(c.location_id == truth for c in cands)
                    status += (f"; the query's true tile, {truth}, is marked {TRUE_MARK}" if found else
                               f"; the query's true tile, {truth}, is not among the candidates")
                yield self._tiles(cands, truth), self._rows(cands, truth), status
        except GleamError as e:
            raise gr.Error(str(e), print_exception=False) from None

    @staticmethod
    def _tiles(cands: list[Candidate], truth: str | None = None) -> list[tuple[Any, str]]:
        out = []
        for c in cands:
            v = c.verification
            rank = f"#{c.rank + 1} " if c.rank is not None else ""
            said = "" if v is None else f", {verdict_text(v.verdict).split(':')[0]}"
            mark = f" {TRUE_MARK}" if c.location_id == truth else ""
            out.append((_preview(open_image(c.tile)),  # the server's own gallery file, never a user's path
                        f"{rank}{c.location_id}{mark} (retrieval #{c.retrieval_rank + 1}{said})"))
        return out

    @staticmethod
    def _rows(cands: list[Candidate], truth: str | None = None) -> list[list[Any]]:
        rows = []
        for c in cands:
            v = c.verification
            tile = f"{c.location_id} {TRUE_MARK}" if c.location_id == truth else c.location_id
            rows.append([c.rank + 1 if c.rank is not None else "", c.retrieval_rank + 1, tile,
                         round(c.retrieval_score, 4), "" if v is None else verdict_text(v.verdict).split(":")[0],
                         "" if v is None or v.p_yes is None else round(v.p_yes, 4), "" if v is None else v.answer])
        return rows


# --- the page ---------------------------------------------------------------------------------------------


INTRO = """# gleamx: match and explain cross-view pairs
**Verify**: a query view (UAV, street map, panorama or ground photo) and a satellite tile go to the GLEAM-X model,
which explains whether they show the same place and ends with a verdict line; P(yes) is read from the model at its
verdict. **Localize**: the retrieval encoder retrieves the gallery's most similar satellite tiles for a query, the model verifies
each one, and the candidates are reranked: its "yes" first, then by P(yes), then by retrieval similarity.
Same prompts, processor, pixel budget and greedy decoding as `gleamx eval` and `gleamx localize`."""


def build_demo(engine: Engine, cfg: AppConfig, notes: list[str] | None = None) -> gr.Blocks:
    """The Blocks of the page over a loaded ``engine`` (not launched)."""
    h = Handlers(engine)
    def shown(value: str) -> str:  # what the app built itself is named within its work dir
        try:
            return str(Path(value).resolve().relative_to(cfg.work_dir().resolve()))
        except (ValueError, OSError):
            return value

    model_line = f"model `{shown(engine.assets.model)}`" + (
        f", adapter `{shown(engine.assets.adapter)}`" if engine.assets.adapter else "")
    with gr.Blocks(title="gleamx", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(" ".join([f"Serving {model_line}; images over {cfg.max_upload_mb:g} MB or "
                              f"{cfg.max_upload_pixels:,} pixels are refused."] + (notes or [])),
                    elem_id="app-notes")
        with gr.Tab("Verify", id="verify"):
            with gr.Row():
                with gr.Column():
                    q_file = gr.File(label="Query view image", type="binary", file_types=["image"],
                                     elem_id="verify-query")
                    q_prev = gr.Image(label="Query preview", interactive=False, height=220, elem_id="verify-query-preview")
                with gr.Column():
                    s_file = gr.File(label="Satellite image", type="binary", file_types=["image"],
                                     elem_id="verify-satellite")
                    s_prev = gr.Image(label="Satellite preview", interactive=False, height=220,
                                      elem_id="verify-satellite-preview")
            with gr.Row(equal_height=True):
                view = gr.Dropdown(list(VIEWS), value=VIEWS[0], label="Query view", elem_id="verify-view")
                lang = gr.Radio(list(LANGS), value=cfg.lang, label="Language", elem_id="verify-lang")
                task = gr.Radio(list(TASKS), value=cfg.task, label="Task", elem_id="verify-task")
                go = gr.Button("Verify", variant="primary", elem_id="verify-button")
            with gr.Row():
                answer = gr.Textbox(label="Answer", lines=6, interactive=False, elem_id="verify-answer", scale=3)
                with gr.Column(scale=1):
                    verdict = gr.Textbox(label="Verdict", interactive=False, elem_id="verify-verdict")
                    p_yes = gr.Label(label="P(yes)", elem_id="verify-p-yes")
                    p_num = gr.Number(value=None, label="P(yes), exact", precision=4, interactive=False,
                                      elem_id="verify-p-yes-value")  # empty, not 0, before a run
            examples = verify_examples(engine.assets)
            if examples:
                gr.Examples(examples, inputs=[q_prev, q_file, view, s_prev, s_file], label="Generated pairs (gleamx.synth)",
                            cache_examples=False, elem_id="verify-examples")
        with gr.Tab("Localize", id="localize"):
            if engine.can_localize:
                n_gallery = len(engine.gallery.gallery)
                gr.Markdown(f"Gallery: {n_gallery} satellite tiles (split `{engine.assets.split}`), encoder "
                            f"`{shown(str(engine.assets.encoder))}`.")
                with gr.Row():
                    with gr.Column():
                        lq_file = gr.File(label="Query view image", type="binary", file_types=["image"],
                                          elem_id="localize-query")
                        lq_prev = gr.Image(label="Query preview", interactive=False, height=220,
                                           elem_id="localize-query-preview")
                    with gr.Column():
                        l_view = gr.Dropdown(list(VIEWS), value=VIEWS[0], label="Query view", elem_id="localize-view")
                        l_lang = gr.Radio(list(LANGS), value=cfg.lang, label="Language", elem_id="localize-lang")
                        l_task = gr.Radio(list(TASKS), value="label", label="Task", elem_id="localize-task")
                        l_k = gr.Slider(1, n_gallery, value=min(cfg.k, n_gallery), step=1, label="Candidates (k)",
                                        elem_id="localize-k")
                        l_go = gr.Button("Localize", variant="primary", elem_id="localize-button")
                l_status = gr.Markdown(label="Status", elem_id="localize-status")
                l_tiles = gr.Gallery(label="Candidates", columns=5, height=260, elem_id="localize-gallery")
                l_table = gr.Dataframe(headers=TABLE_HEADERS, label="Candidates, reranked", interactive=False, wrap=True,
                                       elem_id="localize-table")
                lex = localize_examples(engine)
                if lex:
                    gr.Examples(lex, inputs=[lq_prev, lq_file, l_view], label="Queries of the gallery's split",
                                cache_examples=False, elem_id="localize-examples")
            else:
                gr.Markdown("No gallery: start the app with `--encoder DIR --gallery DIR` to localize queries.")

        # Previews decode an upload (no model): they may run beside a model call, a few at a time.
        preview = dict(concurrency_id="preview", concurrency_limit=4, show_progress="hidden",
                       api_visibility="private")
        q_file.change(h.preview, q_file, q_prev, **preview)
        s_file.change(h.preview, s_file, s_prev, **preview)
        # Every model call shares one queue slot: one request runs the model at a time, the others wait.
        model = dict(concurrency_id="model", concurrency_limit=1)
        go.click(h.verify, [q_file, view, s_file, lang, task], [answer, verdict, p_yes, p_num], api_name="verify", **model)
        if engine.can_localize:
            lq_file.change(h.preview, lq_file, lq_prev, **preview)
            l_go.click(h.localize, [lq_file, l_view, l_lang, l_task, l_k], [l_tiles, l_table, l_status],
                       api_name="localize", **model)
    demo.queue(default_concurrency_limit=1)
    return demo


# --- serving ----------------------------------------------------------------------------------------------


def free_port(host: str) -> int:
    """A port the OS says is free on ``host`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def load(cfg: AppConfig) -> tuple[Engine, Assets]:
    """Build what is missing (tiny mode, examples) and load the engine."""
    assets = resolve(cfg)
    return Engine(cfg, assets), assets


def launch(demo: gr.Blocks, cfg: AppConfig, *, block: bool = True) -> str:
    """Serve ``demo`` as ``cfg`` says; returns the local URL (``block=False``: serve in the background)."""
    port = cfg.port or free_port(cfg.host)
    if cfg.host not in LOOPBACK:
        console.print(f"note: listening on {cfg.host}: anyone who can reach this machine can use the app",
                      markup=False)
    _, url, share_url = demo.launch(server_name=cfg.host, server_port=port, share=cfg.share,
                                    max_file_size=cfg.max_upload_bytes, show_error=False, quiet=True,
                                    ssr_mode=False, mcp_server=False, prevent_thread_lock=True)
    console.print(f"gleamx app at {url}" + (f" and {share_url}" if share_url else "") +
                  (" (Ctrl+C stops)" if block else ""), markup=False)
    if block:
        demo.block_thread()  # until Ctrl+C; then gradio closes the server
    return url


def serve(cfg: AppConfig, *, block: bool = True) -> tuple[gr.Blocks, str]:
    """``gleamx app``: load, build the page, serve it. Returns ``(demo, url)`` (once it stops when blocking)."""
    engine, assets = load(cfg)
    demo = build_demo(engine, cfg, assets.notes)
    url = launch(demo, cfg, block=block)
    return demo, url


__all__ = ["Handlers", "build_demo", "free_port", "launch", "load", "p_yes_value", "serve", "verdict_text"]
