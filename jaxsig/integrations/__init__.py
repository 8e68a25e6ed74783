"""Adapters for other libraries. Each imports its library only when it is itself
imported (``import jaxsig`` never imports Flax)."""
