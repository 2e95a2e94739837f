"""LRC Studio's Gradio app: layout and callbacks only; every computation is a call into `lrc`."""
