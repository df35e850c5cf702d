"""The synthetic world: procedural cross-view data for GLEAM-X, one ground-truth scene per location,
every view rendered from it, explanations written from it.

``world`` (scenes) -> ``render`` (views and object masks) -> ``explain`` (bilingual texts, names from
``phrases``) -> ``build`` (splits, pairs, files, card). It writes :mod:`gleamx.data`'s schema;
nothing in :mod:`gleamx.data` imports it.

``synthesize(out_dir, n, seed)`` writes train/val/test JSONL, images, a retrieval
layout and a dataset card; the same arguments give byte-identical files.
"""

from gleamx.synth.build import DIFFICULTIES, SOURCE, SynthSummary, split_counts, synthesize
from gleamx.synth.explain import Comparison, compare, explain
from gleamx.synth.render import ViewInfo, ViewRender, render_view
from gleamx.synth.world import Scene, generate_scene, perturb_scene, scene_similarity

__all__ = [
    "DIFFICULTIES",
    "SOURCE",
    "Comparison",
    "Scene",
    "SynthSummary",
    "ViewInfo",
    "ViewRender",
    "compare",
    "explain",
    "generate_scene",
    "perturb_scene",
    "render_view",
    "scene_similarity",
    "split_counts",
    "synthesize",
]
