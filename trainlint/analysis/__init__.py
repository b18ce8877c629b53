"""The shared program model: module index, abstract values, and training-action flow."""
