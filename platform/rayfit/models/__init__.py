"""Model builders by name (mlp, cnn) or by import path 'package.module:function'."""
