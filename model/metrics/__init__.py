"""Evaluation metrics of the paper (L1, PSNR, SSIM, LPIPS, FID, FID-VID, FVD) under the
unified standard; see docs/evaluate.md for the weights and the implementation each follows."""
