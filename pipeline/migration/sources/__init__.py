"""Where entries come from: a folder tree, a zip file, a tar stream."""
