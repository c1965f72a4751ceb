"""The Gradio shell: ``build_demo(services)`` lays out one tab per capability.

Tabs only wire components to library functions; no logic lives here.
"""

from __future__ import annotations


def build_demo(services):
    """Return ``(demo, i18n)``; pass ``i18n`` to ``launch``/``mount_gradio_app``."""
    import gradio as gr

    from llmspace.ui import chat_tab
    from llmspace.ui.i18n import make_i18n

    tabs = [("tab_chat", chat_tab.build)]
    for key, module_name, fn_name in EXTRA_TABS:
        module = __import__(f"llmspace.ui.{module_name}", fromlist=[fn_name])
        tabs.append((key, getattr(module, fn_name)))
    i18n = make_i18n()  # built after the tab modules have added their strings
    t = i18n
    with gr.Blocks(title="llmspace") as demo:
        gr.Markdown(t("title"))  # one key per component: gradio cannot join translated strings
        gr.Markdown(t("subtitle"))
        with gr.Tabs():
            for key, build in tabs:
                with gr.Tab(t(key)):
                    build(services, t)
    return demo, i18n


# (tab label key, module in llmspace.ui, build function): tabs other capabilities add.
EXTRA_TABS: list[tuple[str, str, str]] = [("tab_rag", "rag_tab", "build"), ("tab_eval", "eval_tab", "build")]
