// The README's MLflow picture: the pretraining runs of the full model and of the `no-contrastive`
// ablation (3 seeds each) in the MLflow UI's chart view, grouped by `pretrain.loss.clip` (each
// group's mean and range per epoch), validation charts only.
//
//   mlflow server --backend-store-uri sqlite:///mlflow.db --port 5077 &
//   npm install playwright-core        # drives Debian's /usr/bin/chromium
//   node experiments/mlflow_compare.js http://127.0.0.1:5077 docs/mlflow_compare.png "<search filter>"
//
// The filter picks the runs, e.g. "attributes.run_name = 'pretrain'" on a store that holds this
// commit's `dvc repro` and `python -m cliphand.ablation` (with the direct-778 runs removed).
const { chromium } = require('playwright-core');

(async () => {
  const [server, out, filter] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  await page.goto(`${server}/#/experiments/1/runs?compareRunsMode=CHART&searchFilter=${encodeURIComponent(filter)}`);
  await page.waitForTimeout(6000);
  await page.locator('button[aria-label="Close"]').first().click();  // the assistant panel
  await page.getByRole('button', { name: 'Toggle sidebar' }).click();
  await page.getByRole('button', { name: 'Group by' }).click();
  await page.getByText('pretrain.loss.clip', { exact: true }).last().click();
  await page.keyboard.press('Escape');
  await page.getByPlaceholder('Search metric charts').fill('val_');
  await page.waitForTimeout(3000);
  await page.screenshot({ path: out });
  await browser.close();
})();
