"""The models: audio and text encoders, pooling and heads, pretrained-model resolution, bag of words."""
