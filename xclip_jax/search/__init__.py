"""Long videos and text search: timelines (predict --timeline), indexes of window embeddings, text queries.

windows (where windows are and which frames they sample), views (the one place frames become model input),
embedder (windows through the video tower, frames streamed), timeline, store (the on-disk index), indexer,
query (exact search, moments, re-ranking), html_page, cli (python -m xclip_jax.search). docs/search.md.
"""
