// @jupyterlab/builder names the exposed modules by absolute path, and webpack's default
// "deterministic" module ids hash that name: the build would depend on the folder it ran in.
// "named" ids come from paths relative to this folder (webpack/container/entry/jupyter-on-demand,
// ./lib/index.js), so every checkout builds the same bytes (tests/ec2_bootstrap/test_labextension.py).
module.exports = {
  optimization: { moduleIds: 'named' }
};
