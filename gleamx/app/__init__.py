"""``gleamx app``: a Gradio page over the GLEAM-X model and the retrieval encoder.

``config`` (:class:`~gleamx.app.config.AppConfig`) -> ``assets`` (model, encoder, gallery, generated
examples; built on first start without ``--model``) -> ``engine`` (verify a pair, localize a query: the
library calls ``gleamx eval`` and ``gleamx localize`` make) -> ``ui`` (the Gradio Blocks, the launch) and
``space`` (the same app as a Hugging Face Space). Only ``ui`` and ``space`` import gradio.
"""
