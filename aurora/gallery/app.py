"""`aurora gallery`: a read-only Gradio app over `aurora eval` result folders.

At the top, one line per run: its settings (model, frames, token kept ratio, protocol variant,
judge) and its headline numbers. Below, filters — task, right or wrong in any run, runs that
disagree, text search, sort by score difference — and the matching items as a table with each
run's prediction side by side (✓ / ✗ where the benchmark has right and wrong). Choosing an item
shows the frames the model saw (with their indices, decoded again through `aurora.media`), the
full question, reference, predictions and verdicts. Nothing is ever written into a result folder;
binds 127.0.0.1 and loads no web fonts.
"""

from __future__ import annotations

import html

from aurora.gallery.runs import OUTCOMES, SORTS, Item, Run, join, select, tasks

MAX_ROWS = 300  # rows drawn at once; the count line says how many match
ALL_TASKS = "all tasks"


def _e(text, limit: int | None = None) -> str:
    text = "" if text is None else str(text)
    if limit and len(text) > limit:
        text = text[:limit] + " …"
    return html.escape(text).replace("\n", "<br>")


def _mark(row) -> str:
    if row is None:
        return "—"
    mark = ("<span class='gallery-right' style='color:#1a7f37'>✓</span>" if row.correct else
            "<span class='gallery-wrong' style='color:#cf222e'>✗</span>" if row.correct is False else "")
    score = "" if row.score is None or row.correct is not None else f" ({row.score:.2f})"
    return mark + score


def runs_html(runs: list[Run]) -> str:
    head = ("<table id='gallery-runs-table'><tr><th>run</th><th>benchmark</th><th>model</th><th>frames</th>"
            "<th>token kept ratio</th><th>protocol</th><th>judge</th><th>items</th><th>right</th><th>summary</th></tr>")
    body = ""
    for run in runs:
        s = run.settings
        right = sum(1 for r in run.rows.values() if r.correct)
        judged = any(r.correct is not None for r in run.rows.values())
        body += (f"<tr class='gallery-run'><td><b>{_e(run.name)}</b><br><small>{_e(run.folder)}</small></td>"
                 f"<td>{_e(s.get('benchmark'))}</td><td>{_e(s.get('model'))}</td><td>{_e(s.get('frames'))}</td>"
                 f"<td>{_e(s.get('token kept ratio'))}</td><td>{_e(s.get('protocol'))}</td><td>{_e(s.get('judge'))}</td>"
                 f"<td>{len(run.rows)}</td><td>{right if judged else '—'}</td><td>{_e(run.headline)}</td></tr>")
    return head + body + "</table>"


def items_html(runs: list[Run], shown: list[Item], total: int) -> str:
    count = f"<p id='gallery-count'>{len(shown)} of {total} items</p>"
    if len(shown) > MAX_ROWS:
        count += f"<p>first {MAX_ROWS} shown; narrow the filters to see the rest</p>"
    head = "<tr><th>item</th><th>task</th><th>question</th><th>reference</th>"
    head += "".join(f"<th>{_e(run.name)}</th>" for run in runs) + "<th>Δ score</th></tr>"
    body = ""
    for item in shown[:MAX_ROWS]:
        first = item.first
        cells = "".join(f"<td class='gallery-pred'>{_mark(r)} {_e(r.prediction if r else '', 300)}</td>" for r in item.rows)
        flag = " gallery-disagree' style='background:#fff8c5" if item.disagree() else ""  # runs disagree: marked
        body += (f"<tr class='gallery-item{flag}' data-key='{_e(item.key)}'><td>{_e(item.key)}</td><td>{_e(first.task)}</td>"
                 f"<td>{_e(first.question, 240)}</td><td>{_e(first.reference, 160)}</td>{cells}"
                 f"<td>{item.spread():.2f}</td></tr>")
    return count + f"<table id='gallery-items-table'>{head}{body}</table>"


def detail_html(runs: list[Run], item: Item | None) -> str:
    if item is None:
        return ""
    first = item.first
    text = (f"<h3>{_e(item.key)}</h3><p><b>task</b> {_e(first.task)}</p><p><b>question / prompt</b><br>{_e(first.question)}</p>"
            f"<p><b>reference</b><br>{_e(first.reference)}</p><table><tr>")
    text += "".join(f"<th>{_e(run.name)}</th>" for run in runs) + "</tr><tr>"
    for row in item.rows:
        if row is None:
            text += "<td>(not in this run)</td>"
            continue
        frames = f"<br><small>frames {', '.join(map(str, row.frame_indices))}</small>" if row.frame_indices else ""
        text += (f"<td style='vertical-align:top'>{_mark(row)}<br>{_e(row.prediction)}"
                 f"<hr><small>{_e(row.verdict)}</small>{frames}</td>")
    return text + "</tr></table>"


def frames_for(item: Item | None) -> list:
    """(image, caption) pairs of the frames the first run saw (8 uniform frames if it kept no indices)."""
    from aurora import media
    from aurora.errors import AuroraError

    if item is None:
        return []
    row = next((r for r in item.rows if r is not None and r.media), None)
    if row is None:
        return []
    try:
        if row.frame_indices and media.check_visual(row.media).lower().endswith(media.VIDEO_EXTENSIONS):
            indices = row.frame_indices
            frames = media.load_video(row.media, choose=lambda total, fps: indices)
            label = "frame"
        else:
            frames = media.load_visual(row.media, num_frames=8)
            label = "image" if frames.is_image else "frame (indices not recorded; 8 uniform)"
    except (AuroraError, OSError) as e:
        return [(_error_image(), f"cannot show {row.media}: {e}")]
    return [(frame, f"{label} {index}") for frame, index in zip(frames.array, frames.indices)]


def _error_image():
    import numpy as np

    return np.full((32, 32, 3), 200, dtype=np.uint8)


def build_gallery(runs: list[Run]):
    import gradio as gr

    items = join(runs)
    by_key = {item.key: item for item in items}
    task_choices = [ALL_TASKS] + tasks(items)

    def refresh(task, outcome, search, sort):
        shown = select(items, "" if task == ALL_TASKS else task, outcome, search, sort)
        keys = [item.key for item in shown[:MAX_ROWS]]
        return items_html(runs, shown, len(items)), gr.update(choices=keys, value=keys[0] if keys else None)

    def show(key):
        item = by_key.get(key)
        return frames_for(item), detail_html(runs, item)

    with gr.Blocks(title="Aurora gallery", analytics_enabled=False) as demo:
        gr.Markdown("## Aurora gallery: evaluation results side by side")
        gr.HTML(runs_html(runs), elem_id="gallery-runs")
        with gr.Row():
            task = gr.Dropdown(task_choices, value=ALL_TASKS, label="Task", elem_id="gallery-task")
            outcome = gr.Radio(list(OUTCOMES), value=OUTCOMES[0], label="Show", elem_id="gallery-outcome")
            sort = gr.Radio(list(SORTS), value=SORTS[0], label="Sort by", elem_id="gallery-sort")
        search = gr.Textbox(label="Search item, question, reference, predictions and verdicts (Enter)",
                            elem_id="gallery-search")
        initial = select(items)
        table = gr.HTML(items_html(runs, initial, len(items)), elem_id="gallery-items")
        keys = [item.key for item in initial[:MAX_ROWS]]
        chosen = gr.Dropdown(keys, value=keys[0] if keys else None, label="Item", elem_id="gallery-item")
        frames = gr.Gallery(label="Frames the model saw", columns=8, height=220, elem_id="gallery-frames")
        detail = gr.HTML(elem_id="gallery-detail")

        filters = [task, outcome, search, sort]
        for control in (task, outcome, sort):
            control.change(refresh, filters, [table, chosen])
        search.submit(refresh, filters, [table, chosen])
        chosen.change(show, [chosen], [frames, detail])
        demo.load(show, [chosen], [frames, detail])
    return demo


def launch_gallery(runs: list[Run], host: str = "127.0.0.1", port: int = 7861, block: bool = True):
    """Serve the gallery over already loaded runs (`aurora.gallery.runs.load_runs`)."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports leave the machine
    from aurora.serve.gui import local_theme

    demo = build_gallery(runs)
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False,
                theme=local_theme(), quiet=not block, share=False)
    return demo
