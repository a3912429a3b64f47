// Boots Hydrogen's whole web UI (login, room list, room view, composer) from hydrogen-view-sdk's
// exported root view model, without end-to-end encryption: no olm assets are given, so Hydrogen
// runs without its crypto. Its session start requires the service worker (sw.js), which it
// keeps the access token in for authenticated media.
import {
  createNavigation,
  createRouter,
  FeatureSet,
  Platform,
  RootViewModel,
} from "hydrogen-view-sdk";

async function boot() {
  const container = document.getElementById("hydrogen");
  const homeserver = new URL(location.href).searchParams.get("homeserver");
  const platform = new Platform({
    container,
    assetPaths: { downloadSandbox: "assets/download-sandbox.html", serviceWorker: "sw.js" },
    config: { defaultHomeServer: homeserver },
    options: { development: false },
  });
  const navigation = createNavigation();
  platform.setNavigation(navigation);
  await platform.init();
  const urlRouter = createRouter({ navigation, history: platform.history });
  urlRouter.attach();
  const features = await FeatureSet.load(platform.settingsStorage);
  const root = new RootViewModel({ platform, navigation, urlRouter, features });
  await root.load();
  platform.createAndMountRootView(root);
  globalThis.hydrogenBooted = true;
}

boot().catch((error) => {
  globalThis.hydrogenBootError = String(error?.stack ?? error);
  console.error(error);
});
