"""The Streamlit app's pieces: the sidebar's setup, the cached backend, shared widgets and one module per tab.

``streamlit_app.py`` beside this folder lays them out. Nothing here does tensor math: it calls ``wlm``.
"""
