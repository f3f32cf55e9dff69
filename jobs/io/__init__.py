"""The inputs of a run: sources listed into files (folders, manifests, audio tables) and the object-store
settings checked before any work starts."""
