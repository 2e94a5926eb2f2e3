//! Writing a rendered plan to `<workspace>/plan/` atomically.
//!
//! The plan is built in a hidden sibling directory and swapped in with renames, so a
//! failed or interrupted render never leaves a half-written `plan/` that looks complete:
//! readers see the previous plan or the new one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::RenderedPlan;

/// Writes `plan` under `workspace/plan`, replacing any previous plan. Returns its path.
pub fn write_plan(workspace: &Path, plan: &RenderedPlan) -> Result<PathBuf> {
    std::fs::create_dir_all(workspace).with_context(|| format!("cannot create workspace {}", workspace.display()))?;
    clean_stale(workspace);
    let pid = std::process::id();
    let tmp = workspace.join(format!(".plan.tmp-{pid}"));
    let old = workspace.join(format!(".plan.old-{pid}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<()> {
        std::fs::write(tmp.join(format!("{}.yaml", plan.spec_stem)), &plan.spec_rendered)?;
        for stack in &plan.stacks {
            let dir = tmp.join(&stack.name);
            std::fs::create_dir_all(&dir)?;
            for (name, content) in &stack.rendered.files {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, content)?;
            }
            std::fs::write(dir.join("config.yaml"), stack.rendered.config_yaml())?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("cannot write plan under {}", tmp.display())));
    }
    let dest = workspace.join("plan");
    if dest.exists() {
        std::fs::rename(&dest, &old).with_context(|| format!("cannot move old plan {}", dest.display()))?;
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("cannot publish plan {}", dest.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(dest)
}

/// Removes leftovers of renders whose process is gone.
fn clean_stale(workspace: &Path) {
    let Ok(entries) = std::fs::read_dir(workspace) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(".plan.tmp-").or_else(|| name.strip_prefix(".plan.old-")) else { continue };
        let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
