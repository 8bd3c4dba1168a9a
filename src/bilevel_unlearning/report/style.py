"""Names and colours shared by every table and figure, so a method looks the same everywhere."""

from __future__ import annotations

from collections.abc import Sequence

# Row names as the paper prints them; unknown names are shown as they are.
DISPLAY = {
    "target": "Target",
    "retrain": "Retrain",
    "full": "Finetuned",
    "retain": "Retain",
    "original": "Original",
    "ga": "GA",
    "ga_gdr": "GA_GDR",
    "ga_klr": "GA_KLR",
    "npo": "NPO",
    "npo_gdr": "NPO_GDR",
    "npo_klr": "NPO_KLR",
    "simnpo": "SimNPO",
    "task_vector": "Task Vector",
    "whp": "WHP",
    "rmu": "RMU",
    "blur_npo": "BLUR (NPO+GDR)",
    "blur_npo_reversed": "BLUR reversed",
    "blur_ga": "BLUR (GA+GDR)",
    "baldro_dv_npo": "BalDRO-DV (NPO+GDR)",
    "baldro_g_npo": "BalDRO-G (NPO+GDR)",
    "blur_npo_baldro_dv": "BLUR + BalDRO-DV (NPO+GDR)",
    "blur_rmu": "BLUR (RMU)",
    "simnpo_tofu": "SimNPO",
    "rmu_tofu": "RMU",
}
REFERENCE_COLOUR = "#555555"
ARROWS = {"down": "↓", "up": "↑", "zero": "→0", "none": ""}
# Page width of a single paper column, inches (ICML/NeurIPS-like two-column layouts).
COLUMN_WIDTH = 3.3


def display(name: str) -> str:
    """A row label: method display name, with a sweep's gamma kept visible."""
    method, _, rest = name.partition("-")
    label = DISPLAY.get(method, method)
    return f"{label} ({rest.replace('gamma', 'γ=')})" if rest else label


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One fixed colour per configured method (the config's order), the same in every figure."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors + matplotlib.colormaps["tab20b"].colors
    return {m: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, m in enumerate(methods)}


def figure_style() -> None:
    """Fonts and sizes readable at column width."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {
            "font.size": 7,
            "axes.titlesize": 7,
            "axes.labelsize": 7,
            "legend.fontsize": 6,
            "xtick.labelsize": 6,
            "ytick.labelsize": 6,
            "lines.linewidth": 1.0,
            "lines.markersize": 3,
            "savefig.dpi": 300,
            "pdf.fonttype": 42,
            # same bytes for the same data: no creation date in the PDF metadata
            "svg.hashsalt": "bilevel-unlearning",
        }
    )
