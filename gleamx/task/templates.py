"""English and Chinese prompt templates for the GLEAM-X task.

Two variants, as in the paper: ``explain`` (describe both images, compare
landmarks and layout, conclude with a verdict) and ``label`` (verdict line only,
the paper's best-accuracy setting). Image order is fixed and stated in the
prompt: **image 1 is the query view, image 2 is the satellite image**.
"""

from __future__ import annotations

from gleamx.task.verdict import VERDICT_LINES

from gleamx.choices import TASKS

IMAGE_ORDER: tuple[str, str] = ("query_image", "satellite_image")
"""Sample fields in the order their images appear in the user turn."""

VIEW_NAMES: dict[str, dict[str, str]] = {
    "en": {
        "uav": "UAV (drone)",
        "street_map": "street-map",
        "panorama": "street-level panorama",
        "ground": "ground-level",
    },
    "zh": {
        "uav": "无人机航拍",
        "street_map": "街道地图",
        "panorama": "街景全景",
        "ground": "地面照片",
    },
}

_YES = {lang: lines[True] for lang, lines in VERDICT_LINES.items()}
_NO = {lang: lines[False] for lang, lines in VERDICT_LINES.items()}

USER_TEMPLATES: dict[tuple[str, str], str] = {
    ("en", "explain"): (
        "Image 1 is a {view} image and image 2 is a satellite image. "
        "Describe what each image shows, compare their landmarks and spatial layout, "
        "and decide whether they show the same place. "
        f"End with a final line that is exactly '{_YES['en']}' or '{_NO['en']}'."
    ),
    ("en", "label"): (
        "Image 1 is a {view} image and image 2 is a satellite image. "
        "Do they show the same place? "
        f"Reply with exactly '{_YES['en']}' or '{_NO['en']}'."
    ),
    ("zh", "explain"): (
        "图1是一张{view}图像，图2是一张卫星图像。"
        "请分别描述两张图像的内容，比较其中的地标和空间布局，并判断它们是否为同一地点。"
        f"最后一行只写「{_YES['zh']}」或「{_NO['zh']}」。"
    ),
    ("zh", "label"): (
        "图1是一张{view}图像，图2是一张卫星图像。它们是否为同一地点？"
        f"只回答「{_YES['zh']}」或「{_NO['zh']}」。"
    ),
}


def user_prompt(query_view: str, lang: str, task: str = "explain") -> str:
    """The user instruction text for a query view (without image placeholders)."""
    if (lang, task) not in USER_TEMPLATES:
        raise ValueError(
            f"expected lang in {sorted(VIEW_NAMES)} and task in {list(TASKS)}, got lang={lang!r} task={task!r}"
        )
    if query_view not in VIEW_NAMES[lang]:
        raise ValueError(f"query_view: expected one of {', '.join(VIEW_NAMES[lang])}, got {query_view!r}")
    return USER_TEMPLATES[(lang, task)].format(view=VIEW_NAMES[lang][query_view])


def view_from_prompt(text: str) -> str | None:
    """Recover the query view from a prompt written by :func:`user_prompt` (ShareGPT import)."""
    for lang, names in VIEW_NAMES.items():
        for view, name in names.items():
            needle = f"Image 1 is a {name} image" if lang == "en" else f"图1是一张{name}图像"
            if needle in text:
                return view
    return None
