"""Clinical Flair, reproduced: the utilities behind the book's notebooks.

Modules follow the data flow, each importing only those before it:
``data`` (datasets) -> ``corpus`` (pre-training text) -> ``lm`` (character language models) ->
``embeddings`` -> ``ner`` (runs) -> ``results`` (tables, figures).
"""

__version__ = "0.1.0"

import warnings

# flair imports tqdm.auto, which warns in notebooks without ipywidgets; the text progress bars work
warnings.filterwarnings("ignore", message="IProgress not found", category=Warning)
