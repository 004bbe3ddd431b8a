"""`report.html` of an evaluated run, to open in a browser: `report.md` with its tables and
figures, an embedding explorer (the codes of each latent space in 2-D, coloured by any column of
`latents.csv`), and per target group an interactive view of its salient map over the MNI152
template (nilearn's `view_img`, in `salient_map_<group>.html`) and a glass-brain view.

Everything is a file beside the page (no server, no network): open `report.html` directly.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurocvae.contrastive.latents import code_columns
from neurocvae.evaluation.plots import projection
from neurocvae.files import write_text_atomically

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 0.2em; }
iframe { width: 100%; height: 480px; border: 1px solid #ddd; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots figure { margin: 0; }
.plots svg { border: 1px solid #ddd; background: #fff; }
.legend { font-size: 0.85em; }
"""

# Draws one SVG scatter per latent space from DATA, coloured by the column chosen: categories
# from a palette, numbers on a blue-to-orange scale; a point's tooltip names the scan.
EXPLORER_JS = """
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
const SIZE = 360, PAD = 12, NS = "http://www.w3.org/2000/svg";
function scale(values) {
  const lo = Math.min(...values), hi = Math.max(...values);
  return v => PAD + (SIZE - 2 * PAD) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
}
function colouring(values) {
  const numbers = values.filter(v => typeof v === "number" && isFinite(v));
  if (numbers.length === values.length && new Set(values).size > 10) {
    const lo = Math.min(...numbers), hi = Math.max(...numbers);
    const colour = v => {
      const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      const [r, g, b] = [40 + 215 * t, 90 + 60 * t, 200 - 170 * t].map(Math.round);
      return `rgb(${r},${g},${b})`;
    };
    return { colour, legend: `${lo.toPrecision(3)} (blue) … ${hi.toPrecision(3)} (orange)` };
  }
  const categories = [...new Set(values.map(String))].sort();
  const colour = v => PALETTE[categories.indexOf(String(v)) % PALETTE.length];
  return { colour, legend: categories.map(c =>
    `<span style="color:${colour(c)}">●</span> ${c}`).join(" &nbsp; ") };
}
function draw() {
  const column = document.getElementById("colour").value;
  const values = DATA.rows.map(r => r[column]);
  const { colour, legend } = colouring(values);
  const plots = document.getElementById("plots");
  plots.replaceChildren();
  for (const [space, { method, points }] of Object.entries(DATA.spaces)) {
    const x = scale(points.map(p => p[0])), y = scale(points.map(p => p[1]));
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", SIZE); svg.setAttribute("height", SIZE);
    points.forEach((p, i) => {
      const dot = document.createElementNS(NS, "circle");
      dot.setAttribute("cx", x(p[0])); dot.setAttribute("cy", SIZE - y(p[1]));
      dot.setAttribute("r", 3.5); dot.setAttribute("fill", colour(values[i]));
      dot.setAttribute("fill-opacity", 0.8);
      const title = document.createElementNS(NS, "title");
      title.textContent = `${DATA.rows[i].subject_id}: ${column} = ${values[i]}`;
      dot.appendChild(title); svg.appendChild(dot);
    });
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = `${space} space (${method} of the code means)`;
    figure.append(caption, svg); plots.appendChild(figure);
  }
  document.getElementById("legend").innerHTML = legend;
}
const select = document.getElementById("colour");
for (const column of DATA.columns) select.add(new Option(column, column));
select.value = DATA.columns.includes("group") ? "group" : DATA.columns[0];
select.addEventListener("change", draw);
draw();
"""


def explorer_data(latents: pd.DataFrame, method: str) -> dict[str, Any]:
    """The 2-D projection of each space's codes and every other column of `latents`, as
    JSON-ready lists (NaN → null)."""
    spaces = {space: projection(latents[code_columns(latents, space)].to_numpy(), method)
              for space in ("salient", "shared") if code_columns(latents, space)}
    columns = [c for c in latents.columns if not c.startswith(("shared_", "salient_"))
               and c != "path" and not c.endswith("_path")]

    def ready(value: Any) -> Any:
        if isinstance(value, float | np.floating):
            return None if math.isnan(value) else round(float(value), 4)
        return value.item() if isinstance(value, np.generic) else value

    rows = [{c: ready(v) for c, v in zip(columns, row, strict=True)}
            for row in latents[columns].itertuples(index=False)]
    return {"columns": columns, "rows": rows,
            "spaces": {s: {"method": name, "points": np.round(xy, 4).tolist()}
                       for s, (xy, name) in spaces.items()}}


def salient_map_views(out_dir: Path, maps: list[dict[str, Any]]) -> list[str]:
    """Write each group's interactive view (`salient_map_<group>.html`) and glass-brain PNG;
    the HTML of the section that shows them."""
    import nibabel as nib
    from nilearn import datasets, plotting

    template = datasets.load_mni152_template(resolution=2)
    parts = ["<h2>Salient maps, interactive</h2>",
             "<p>Each group's mean D([z,s]) − D([z,0]) over the MNI152 template: click to move "
             "the cut; values under 20 % of the peak are hidden. Below each, the glass-brain "
             "view (all of the brain at once).</p>"]
    for m in maps:
        image = nib.load(out_dir / m["nifti"])
        limit = float(np.abs(image.get_fdata()).max()) or 1.0
        view = plotting.view_img(image, bg_img=template, threshold=0.2 * limit, vmax=limit,
                                 symmetric_cmap=True, title=f"{m['group']}: salient map")
        page = f"salient_map_{m['group']}.html"
        write_text_atomically(out_dir / page, view.get_standalone())
        glass = f"salient_map_{m['group']}_glass.png"
        display = plotting.plot_glass_brain(image, threshold=0.2 * limit, vmax=limit,
                                            plot_abs=False, colorbar=True,
                                            title=f"{m['group']}: glass brain")
        display.savefig(str(out_dir / glass), dpi=90)
        display.close()
        group = html.escape(m["group"])
        parts += [f"<h3>{group}</h3>",
                  f'<iframe src="{html.escape(page)}" title="{group} salient map"></iframe>',
                  f'<img src="{html.escape(glass)}" alt="{group} glass brain">']
    return parts


def html_page(title: str, parts: list[str]) -> str:
    """A whole HTML document: the title, the page's style, the parts in order."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def markdown_html(text: str) -> str:
    """Markdown (with tables) as HTML."""
    import markdown

    return markdown.markdown(text, extensions=["tables"])


def write_html_report(out_dir: Path, latents: pd.DataFrame, metrics: dict[str, Any], *,
                      embedding: str = "pca") -> Path:
    """Write `<out_dir>/report.html` from `report.md` (already written there), the latents and
    the salient maps; returns its path."""
    body = markdown_html((out_dir / "report.md").read_text())
    data = json.dumps(explorer_data(latents, embedding)).replace("</", "<\\/")
    parts = [body, "<h2>Latent spaces, coloured by any column</h2>",
             "<p>Each test scan (targets and backgrounds) in 2-D; hover over a point for its "
             "subject. Colour by:</p>",
             '<p><select id="colour"></select> <span id="legend" class="legend"></span></p>',
             '<div id="plots" class="plots"></div>',
             "<script>window.addEventListener('error', e => "
             "document.body.dataset.error = e.message);</script>",
             f"<script>\nconst DATA = {data};\n{EXPLORER_JS}</script>"]
    if metrics.get("salient_maps"):
        parts += salient_map_views(out_dir, metrics["salient_maps"])
    path = out_dir / "report.html"
    write_text_atomically(path, html_page(f"neurocvae evaluation: {metrics.get('run', '')}",
                                          parts))
    return path


def write_comparison_html(out_dir: Path, comparison_md: str, reports: dict[str, Path]) -> Path:
    """Write `<out_dir>/comparison.html`: a sweep's comparison (its markdown) and a link to
    each run's `report.html` (`reports`: run name → page)."""
    links = [f'<li><a href="{html.escape(str(Path(os.path.relpath(page, out_dir))))}">'
             f"{html.escape(name)}</a></li>" for name, page in reports.items() if page.is_file()]
    parts = [markdown_html(comparison_md), "<h2>Each run's report</h2>",
             "<ul>", *links, "</ul>"]
    path = out_dir / "comparison.html"
    write_text_atomically(path, html_page(f"neurocvae sweep comparison: {out_dir}", parts))
    return path
