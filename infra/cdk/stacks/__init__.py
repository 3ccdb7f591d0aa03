"""One module per stack: network, compute (sagemaker | eks) and the control plane."""
