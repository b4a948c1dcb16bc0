"""Synthetic audio-visual piano corpus: music, audio and keyboard-video rendering."""
