"""The results gallery: `aurora gallery RESULTS_DIR [RESULTS_DIR ...]`.

    runs.py   result folders -> runs and rows (read only), joined by item id; filters and sorting
    app.py    the Gradio app over them
    cli.py    the `gallery` subcommand
"""
