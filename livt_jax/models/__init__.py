"""Models: timm-compatible ViT, MAE, position embeddings, timm conversion, MGP -> BFT transfer."""
